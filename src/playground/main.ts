/**
 * The playground: pick a language, type code, run it on a kernel of this service through its Jupyter
 * channels WebSocket (@jupyterlab/services), see output stream in, answer input(), interrupt, restart.
 * One kernel at a time; it is shut down when the language changes or the page goes away.
 */
import { KernelAPI, KernelConnection, type Kernel, type KernelMessage, type KernelSpecAPI, type ServerConnection } from '@jupyterlab/services';
import { probe, storedToken, storeToken } from './connection.js';
import { CodeEditor } from './editor.js';
import { RunOutput } from './output.js';

const SAMPLES: Record<string, string> = {
  python: 'import time\nfor i in range(3):\n    print("tick", i, flush=True)\n    time.sleep(0.3)\nname = input("Your name? ")\nprint(f"Hello, {name}!")\n',
  c: '#include <stdio.h>\n\nint main(void) {\n    printf("Hello from C: %d\\n", 6 * 7);\n    return 0;\n}\n',
  cpp: '#include <iostream>\n\nint main() {\n    std::cout << "Hello from C++: " << 6 * 7 << std::endl;\n}\n',
  go: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello from Go:", 6*7)\n}\n',
  javascript: 'console.log("Hello from JavaScript:", 6 * 7);\n',
  ruby: 'puts "Hello from Ruby: #{6 * 7}"\n',
};

/** Runs kept on the page; older ones are removed. */
const MAX_RUNS_SHOWN = 50;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

class Playground {
  private readonly editor: CodeEditor;
  private kernel?: Kernel.IKernelConnection;
  private runs = 0;
  private sample = '';
  private readonly select = $<HTMLSelectElement>('language');
  private readonly output = $<HTMLElement>('output');
  private readonly status = $<HTMLElement>('status');

  constructor(
    private readonly settings: ServerConnection.ISettings,
    private readonly specs: KernelSpecAPI.ISpecModels,
  ) {
    this.editor = new CodeEditor($('editor'), () => void this.run(), (code, cursorPos) => this.complete(code, cursorPos));
    const names = Object.keys(specs.kernelspecs).sort((a, b) => displayName(specs, a).localeCompare(displayName(specs, b)));
    for (const name of names) this.select.append(new Option(displayName(specs, name), name));
    const wanted = new URLSearchParams(location.search).get('kernel');
    this.select.value = wanted && specs.kernelspecs[wanted] ? wanted : specs.kernelspecs[specs.default] ? specs.default : (names[0] ?? '');
    this.select.addEventListener('change', () => void this.startKernel(this.select.value));
    $('run').addEventListener('click', () => void this.run());
    $('interrupt').addEventListener('click', () => void this.interrupt());
    $('restart').addEventListener('click', () => void this.restart());
    $('clear').addEventListener('click', () => this.output.replaceChildren());
    $<HTMLFormElement>('stdin').addEventListener('submit', (event) => event.preventDefault());
    // The kernel is the service's to keep until its idle timeout otherwise: give it back when the page goes.
    addEventListener('pagehide', () => this.release());
    $('main').hidden = false;
    if (names.length === 0) this.setStatus('no languages: the service has no kernel images');
    else void this.startKernel(this.select.value);
  }

  private setStatus(text: string): void {
    this.status.textContent = text;
    this.status.dataset.status = text;
    const settled = this.kernel !== undefined && text !== 'starting' && text !== 'restarting';
    const usable = settled && text !== 'dead';
    $<HTMLButtonElement>('run').disabled = !usable;
    $<HTMLButtonElement>('interrupt').disabled = !usable;
    // A dead kernel (out of memory, killed) is what Restart is for.
    $<HTMLButtonElement>('restart').disabled = !settled;
  }

  private async startKernel(name: string): Promise<void> {
    const spec = this.specs.kernelspecs[name];
    if (!spec) return;
    const old = this.kernel;
    this.kernel = undefined;
    this.hideStdin();
    this.setStatus('starting');
    void this.editor.setLanguage(spec.language);
    // A sample for the new language, unless the user has typed code of their own.
    if (this.editor.code === '' || this.editor.code === this.sample) {
      this.sample = SAMPLES[spec.language.toLowerCase()] ?? '';
      this.editor.code = this.sample;
    }
    if (old) await old.shutdown().catch(() => old.dispose());
    try {
      // A connection of its own, not a KernelManager: that polls GET /api/kernels, which the page does not
      // need and which KG_LIST_KERNELS=false refuses.
      const model = await KernelAPI.startNew({ name }, this.settings);
      const kernel: Kernel.IKernelConnection = new KernelConnection({ model, serverSettings: this.settings });
      if (this.select.value !== name) {
        // The language changed again while this one started.
        await kernel.shutdown().catch(() => kernel.dispose());
        return;
      }
      this.kernel = kernel;
      kernel.statusChanged.connect((_, status) => this.kernel === kernel && this.setStatus(status));
      kernel.connectionStatusChanged.connect((_, status) => {
        if (this.kernel === kernel && status !== 'connected') this.setStatus(status);
      });
      await kernel.info;
      if (this.kernel === kernel) this.setStatus(kernel.status === 'unknown' ? 'idle' : kernel.status);
      this.editor.focus();
    } catch (error) {
      this.setStatus('failed');
      this.notice(`Could not start ${spec.display_name}: ${(error as Error).message}`);
    }
  }

  private async run(): Promise<void> {
    const kernel = this.kernel;
    const code = this.editor.code;
    if (!kernel || code.trim() === '') return;
    const out = new RunOutput(this.output, ++this.runs, code);
    // The oldest runs go once there are many: the page's memory stays bounded however long it is used.
    const runs = this.output.querySelectorAll('.run');
    for (let i = 0; i < runs.length - MAX_RUNS_SHOWN; i++) runs[i]!.remove();
    out.state = 'running';
    out.node.scrollIntoView({ block: 'nearest' });
    // Each run stands alone, as in a console: one that fails must not get the next one aborted
    // (ipykernel aborts what reaches it just after an error when stop_on_error is set).
    const future = kernel.requestExecute({ code, allow_stdin: true, stop_on_error: false });
    let scrolling = false;
    future.onIOPub = (msg) => {
      out.handle(msg);
      // At most one scroll (one layout) per frame however fast the output comes.
      if (scrolling) return;
      scrolling = true;
      requestAnimationFrame(() => {
        scrolling = false;
        out.node.scrollIntoView({ block: 'end' });
      });
    };
    future.onStdin = (msg) => {
      if (msg.header.msg_type === 'input_request') this.askInput(kernel, msg as KernelMessage.IInputRequestMsg, out);
    };
    try {
      const reply = await future.done;
      const content = reply.content as KernelMessage.IExecuteReplyMsg['content'];
      if (content.status === 'error') out.replyError(content.ename, content.evalue);
      if (content.status === 'error') out.state = /interrupt/i.test(content.ename) ? 'interrupted' : 'error';
      else out.state = content.status === 'ok' ? 'ok' : 'aborted';
    } catch (error) {
      // The kernel restarted or went away with this run unfinished.
      out.note(`run ended without a reply: ${(error as Error).message}`);
      out.state = 'aborted';
    } finally {
      if ($('stdin').dataset.run === String(this.runs)) this.hideStdin();
    }
  }

  /** The kernel's completions; none while it is busy (its reply would wait for the run to end). */
  private async complete(code: string, cursorPos: number) {
    const kernel = this.kernel;
    if (!kernel || kernel.status !== 'idle') return undefined;
    const reply = await kernel.requestComplete({ code, cursor_pos: cursorPos }).catch(() => undefined);
    const content = reply?.content;
    if (!content || content.status !== 'ok') return undefined;
    return { matches: content.matches, cursorStart: content.cursor_start, cursorEnd: content.cursor_end };
  }

  private askInput(kernel: Kernel.IKernelConnection, msg: KernelMessage.IInputRequestMsg, out: RunOutput): void {
    const form = $<HTMLFormElement>('stdin');
    const input = $<HTMLInputElement>('stdin-input');
    $('stdin-prompt').textContent = msg.content.prompt || 'input:';
    input.type = msg.content.password ? 'password' : 'text';
    input.value = '';
    form.dataset.run = out.node.dataset.run;
    form.hidden = false;
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const value = input.value;
      this.hideStdin();
      out.echoInput(msg.content.prompt, value, msg.content.password);
      kernel.sendInputReply({ status: 'ok', value }, msg.header as KernelMessage.IInputReplyMsg['parent_header']);
      this.editor.focus();
    };
  }

  private hideStdin(): void {
    const form = $<HTMLFormElement>('stdin');
    form.hidden = true;
    form.onsubmit = null;
    delete form.dataset.run;
  }

  private async interrupt(): Promise<void> {
    await this.kernel?.interrupt().catch((error: Error) => this.notice(`interrupt failed: ${error.message}`));
  }

  private async restart(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel) return;
    this.hideStdin();
    this.setStatus('restarting');
    try {
      await kernel.restart();
      this.notice('kernel restarted');
    } catch (error) {
      // The kernel is gone (it died and was removed, or was culled while idle): a new one instead.
      this.notice(`the kernel could not be restarted (${(error as Error).message}); starting a new one`);
      await this.startKernel(this.select.value);
    }
  }

  private notice(text: string): void {
    const p = document.createElement('p');
    p.className = 'notice';
    p.textContent = text;
    this.output.append(p);
  }

  private release(): void {
    const kernel = this.kernel;
    if (!kernel) return;
    const headers: Record<string, string> = this.settings.token ? { Authorization: `token ${this.settings.token}` } : {};
    void fetch(`${this.settings.baseUrl}api/kernels/${encodeURIComponent(kernel.id)}`, { method: 'DELETE', headers, keepalive: true }).catch(() => undefined);
  }
}

function displayName(specs: KernelSpecAPI.ISpecModels, name: string): string {
  return specs.kernelspecs[name]?.display_name ?? name;
}

/** Shows the token form and resolves with what the user enters. */
function askToken(message: string): Promise<string> {
  const form = $<HTMLFormElement>('token-form');
  const input = $<HTMLInputElement>('token-input');
  $('token-message').textContent = message;
  form.hidden = false;
  input.value = '';
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      form.hidden = true;
      resolve(input.value.trim());
    };
  });
}

async function boot(): Promise<void> {
  let token = storedToken();
  for (;;) {
    const answer = await probe(token);
    if (answer.ok) {
      storeToken(token);
      new Playground(answer.settings, answer.specs);
      return;
    }
    if (!answer.needsToken) {
      $('status').textContent = answer.message;
      return;
    }
    storeToken('');
    $('status').textContent = 'waiting for a token';
    token = await askToken(answer.message);
    $('status').textContent = 'connecting';
  }
}

void boot();
