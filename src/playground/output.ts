/**
 * One run's output area: renders the kernel's iopub messages (stream, display_data, execute_result,
 * update_display_data, clear_output, error) as they arrive. Nothing a kernel sends is ever put into this
 * page as markup: text goes in as text, images as data: URLs, and HTML into a sandboxed frame that may
 * not run scripts (it inherits the page's CSP too, so it loads nothing from elsewhere).
 */
import type { KernelMessage } from '@jupyterlab/services';

type MimeBundle = Record<string, unknown>;

/** Terminal colour codes in tracebacks (IPython's) and compiler output. */
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;
export const stripAnsi = (text: string) => text.replace(ANSI, '');

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/svg+xml'];

/**
 * Stream text one run shows at most: a program printing without end must not grow the page until the tab
 * stalls. What comes past it is counted, not kept (the kernel's own output is not cut).
 */
export const MAX_RUN_TEXT = 100_000;

export class RunOutput {
  readonly node: HTMLElement;
  private lastStream?: { name: string; pre: HTMLPreElement };
  private readonly displays = new Map<string, HTMLElement[]>();
  private clearPending = false;
  private shownText = 0;
  private droppedText = 0;
  private dropNote?: HTMLElement;

  constructor(parent: HTMLElement, index: number, code: string) {
    this.node = el('section', 'run');
    this.node.dataset.run = String(index);
    const head = el('pre', 'run-code');
    head.textContent = code;
    head.dataset.prompt = `In [${index}]`;
    this.node.append(head, el('div', 'run-outputs'));
    parent.append(this.node);
  }

  private get outputs(): HTMLElement {
    return this.node.querySelector('.run-outputs') as HTMLElement;
  }

  set state(state: 'running' | 'ok' | 'error' | 'aborted' | 'interrupted') {
    this.node.dataset.state = state;
  }

  /** Any iopub message of this run. */
  handle(msg: KernelMessage.IIOPubMessage): void {
    const content = msg.content as Record<string, any>;
    switch (msg.header.msg_type) {
      case 'stream':
        this.flushClear();
        this.stream(String(content.name), String(content.text ?? ''));
        break;
      case 'display_data':
      case 'execute_result':
        this.flushClear();
        this.display(content.data ?? {}, content.transient?.display_id);
        break;
      case 'update_display_data':
        this.updateDisplay(content.transient?.display_id, content.data ?? {});
        break;
      case 'clear_output':
        if (content.wait) this.clearPending = true;
        else this.clear();
        break;
      case 'error':
        this.flushClear();
        this.error(String(content.ename ?? 'Error'), String(content.evalue ?? ''), (content.traceback as string[]) ?? []);
        break;
    }
  }

  /** A line the user answered input() with, shown where the program asked. */
  echoInput(prompt: string, value: string, password: boolean): void {
    this.stream('stdin', `${prompt}${password ? '••••••' : value}\n`);
  }

  /** An execute_reply that says error when no error message came on iopub (a kernel's own failure). */
  replyError(ename: string, evalue: string): void {
    if (!this.outputs.querySelector('.error')) this.error(ename, evalue, []);
  }

  note(text: string): void {
    const p = el('p', 'note');
    p.textContent = text;
    this.outputs.append(p);
    this.lastStream = undefined;
  }

  private stream(name: string, text: string): void {
    let shown = stripAnsi(text);
    const room = MAX_RUN_TEXT - this.shownText;
    if (shown.length > room) {
      this.dropped(shown.length - Math.max(room, 0));
      shown = shown.slice(0, Math.max(room, 0));
      if (shown === '') return;
    }
    this.shownText += shown.length;
    if (!this.lastStream || this.lastStream.name !== name) {
      const pre = el('pre', `stream ${name}`);
      pre.append(document.createTextNode(''));
      this.outputs.append(pre);
      this.lastStream = { name, pre };
    }
    // One text node per block, grown in place: a program printing line by line adds no node per line.
    (this.lastStream.pre.lastChild as Text).appendData(shown);
  }

  private dropped(count: number): void {
    this.droppedText += count;
    if (!this.dropNote) {
      this.dropNote = el('p', 'note truncated');
      this.node.append(this.dropNote);
    }
    this.dropNote.textContent = `output cut: ${this.droppedText.toLocaleString('en')} more characters past the first ${MAX_RUN_TEXT.toLocaleString('en')} are not shown`;
  }

  private display(data: MimeBundle, displayId?: string): void {
    const node = renderBundle(data);
    this.outputs.append(node);
    this.lastStream = undefined;
    if (displayId) this.displays.set(displayId, [...(this.displays.get(displayId) ?? []), node]);
  }

  private updateDisplay(displayId: string | undefined, data: MimeBundle): void {
    if (!displayId) return;
    const nodes = this.displays.get(displayId) ?? [];
    const fresh = nodes.map((old) => {
      const node = renderBundle(data);
      old.replaceWith(node);
      return node;
    });
    this.displays.set(displayId, fresh);
  }

  private error(ename: string, evalue: string, traceback: string[]): void {
    const pre = el('pre', 'error');
    pre.textContent = stripAnsi(traceback.length ? traceback.join('\n') : `${ename}: ${evalue}`);
    pre.dataset.ename = ename;
    this.outputs.append(pre);
    this.lastStream = undefined;
  }

  private flushClear(): void {
    if (this.clearPending) this.clear();
  }

  private clear(): void {
    this.clearPending = false;
    this.shownText = 0;
    this.outputs.replaceChildren();
    this.lastStream = undefined;
    this.displays.clear();
  }
}

/** The richest part of a MIME bundle this page can show safely. */
export function renderBundle(data: MimeBundle): HTMLElement {
  const image = IMAGE_TYPES.find((type) => typeof data[type] === 'string');
  if (image) {
    const img = document.createElement('img');
    img.className = 'display image';
    const raw = String(data[image]);
    // SVG arrives as markup; an <img> renders it without running any script it holds.
    img.src = image === 'image/svg+xml' ? `data:image/svg+xml;charset=utf-8,${encodeURIComponent(raw)}` : `data:${image};base64,${raw.replace(/\s/g, '')}`;
    img.alt = typeof data['text/plain'] === 'string' ? (data['text/plain'] as string) : image;
    return img;
  }
  if (typeof data['text/html'] === 'string') return htmlFrame(data['text/html'] as string);
  const pre = el('pre', 'display text');
  const text = data['text/plain'] ?? (data['application/json'] !== undefined ? JSON.stringify(data['application/json'], null, 2) : '');
  pre.textContent = stripAnsi(String(text));
  return pre;
}

/**
 * Kernel HTML (a DataFrame, a styled table) in a frame sandboxed without allow-scripts: no script in it
 * runs. allow-same-origin only lets this page read the frame's height to size it.
 */
function htmlFrame(html: string): HTMLElement {
  const frame = document.createElement('iframe');
  frame.className = 'display html';
  frame.setAttribute('sandbox', 'allow-same-origin');
  frame.setAttribute('referrerpolicy', 'no-referrer');
  frame.title = 'HTML output';
  frame.style.height = '24px';
  frame.srcdoc = `<!doctype html><meta charset="utf-8"><style>html,body{height:auto}body{margin:0;overflow:auto;font:13px system-ui,sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>${html}`;
  frame.addEventListener('load', () => {
    // The body's height, not the document's: that is at least the frame's own (150 px by default).
    const body = frame.contentDocument?.body;
    if (body) frame.style.height = `${Math.min(Math.max(body.scrollHeight, body.offsetHeight) + 8, 600)}px`;
  });
  return frame;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}
