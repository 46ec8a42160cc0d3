/**
 * The code editor: CodeMirror 6 with the basic setup, a language mode per kernelspec language, the
 * kernel's completions, and Shift+Enter (or Ctrl/Cmd+Enter) to run.
 */
import { basicSetup, EditorView } from 'codemirror';
import { Compartment, EditorState, Prec, type Extension } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { autocompletion, type CompletionContext, type CompletionResult } from '@codemirror/autocomplete';
import { StreamLanguage, type StreamParser } from '@codemirror/language';

const legacy = async (load: () => Promise<StreamParser<unknown>>): Promise<Extension> => StreamLanguage.define(await load());

/**
 * The mode for a kernelspec's `language` (Jupyter's language_info names); none = plain text. Each is
 * loaded when first chosen (its own chunk of the bundle), so the page starts with the editor alone.
 */
export async function languageMode(language: string): Promise<Extension> {
  switch (language.toLowerCase()) {
    case 'python':
      return (await import('@codemirror/lang-python')).python();
    case 'c':
    case 'c++':
    case 'cpp':
      return (await import('@codemirror/lang-cpp')).cpp();
    case 'javascript':
      return (await import('@codemirror/lang-javascript')).javascript();
    case 'typescript':
      return (await import('@codemirror/lang-javascript')).javascript({ typescript: true });
    case 'java':
      return (await import('@codemirror/lang-java')).java();
    case 'rust':
      return (await import('@codemirror/lang-rust')).rust();
    case 'go':
      return (await import('@codemirror/lang-go')).go();
    case 'php':
      // Kernel code is PHP without the <?php opening tag.
      return (await import('@codemirror/lang-php')).php({ plain: true });
    case 'ruby':
      return legacy(async () => (await import('@codemirror/legacy-modes/mode/ruby')).ruby);
    case 'r':
      return legacy(async () => (await import('@codemirror/legacy-modes/mode/r')).r);
    case 'lua':
      return legacy(async () => (await import('@codemirror/legacy-modes/mode/lua')).lua);
    case 'perl':
      return legacy(async () => (await import('@codemirror/legacy-modes/mode/perl')).perl);
    case 'bash':
    case 'shell':
    case 'sh':
      return legacy(async () => (await import('@codemirror/legacy-modes/mode/shell')).shell);
    default:
      return [];
  }
}

/** What the kernel offers at a cursor (Jupyter's complete_request); positions in code points, as Jupyter counts. */
export type Completer = (code: string, cursorPos: number) => Promise<{ matches: string[]; cursorStart: number; cursorEnd: number } | undefined>;

const codePoints = (text: string) => [...text].length;
/** The UTF-16 offset in `text` of code point `n` (CodeMirror counts UTF-16 units). */
const offsetOf = (text: string, n: number) => [...text].slice(0, n).join('').length;

export class CodeEditor {
  readonly view: EditorView;
  private readonly language = new Compartment();
  private languageName = '';

  constructor(parent: HTMLElement, onRun: () => void, complete?: Completer) {
    // Names completed by the kernel: on Ctrl+Space, or while a name is typed.
    const fromKernel = async (context: CompletionContext): Promise<CompletionResult | null> => {
      if (!complete || (!context.explicit && !context.matchBefore(/[\w.]{2,}$/))) return null;
      const code = context.state.doc.toString();
      const reply = await complete(code, codePoints(code.slice(0, context.pos)));
      if (!reply || reply.matches.length === 0 || context.aborted) return null;
      return {
        from: offsetOf(code, reply.cursorStart),
        to: offsetOf(code, reply.cursorEnd),
        options: reply.matches.slice(0, 200).map((label) => ({ label })),
        filter: false,
      };
    };
    const run = () => {
      onRun();
      return true;
    };
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: '',
        extensions: [
          Prec.highest(keymap.of([{ key: 'Shift-Enter', run }, { key: 'Mod-Enter', run }])),
          basicSetup,
          this.language.of([]),
          autocompletion({ override: [fromKernel], activateOnTypingDelay: 250 }),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': 'code' }),
        ],
      }),
    });
  }

  get code(): string {
    return this.view.state.doc.toString();
  }

  set code(text: string) {
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } });
  }

  /** Highlights as `language`; a mode that fails to load leaves plain text (the editor works without). */
  async setLanguage(language: string): Promise<void> {
    this.languageName = language;
    const mode = await languageMode(language).catch(() => []);
    // Another language may have been chosen while this one loaded.
    if (this.languageName === language) this.view.dispatch({ effects: this.language.reconfigure(mode) });
  }

  focus(): void {
    this.view.focus();
  }
}
