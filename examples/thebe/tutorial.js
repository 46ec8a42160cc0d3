// Makes the page's <pre data-executable> blocks runnable with thebe-core (window.thebeCore, from
// thebe-core.min.js) on a polykernel service, which Thebe sees as a Jupyter server: connectToJupyter with
// its address and token, one session (POST /api/sessions) and its kernel's channels WebSocket.
(function () {
  const { api } = window.thebeCore;
  const page = JSON.parse(document.getElementById('thebe-config').textContent);
  const params = new URLSearchParams(location.search);
  const baseUrl = new URL(params.get('server') ?? page.serverSettings.baseUrl).href;
  const token = params.get('token') ?? page.serverSettings.token ?? '';
  const kernelName = params.get('kernel') ?? page.kernelOptions.kernelName;
  const status = document.getElementById('thebe-status');
  const activateButton = document.getElementById('activate');
  const runAllButton = document.getElementById('run-all');
  const blocks = [...document.querySelectorAll('pre[data-executable]')];
  const show = (text) => {
    status.textContent = text;
    status.dataset.status = text;
  };

  async function run(cell, pre, output) {
    output.dataset.state = 'running';
    // The block as the reader left it: they may have edited it.
    const result = await cell.execute(pre.textContent);
    output.dataset.state = result && !result.error ? 'ok' : 'error';
  }

  async function activate() {
    activateButton.disabled = true;
    show('connecting');
    const config = api.makeConfiguration({
      serverSettings: {
        baseUrl,
        wsUrl: baseUrl.replace(/^http/, 'ws'),
        token,
        appendToken: true,
        // @jupyterlab/services sends its JSON bodies unlabelled (text/plain); polykernel refuses such a
        // body from a web page, as a cross-site form could send it. Labelled, each call is CORS-checked.
        init: { cache: 'no-store', headers: { 'Content-Type': 'application/json' } },
      },
      kernelOptions: { ...page.kernelOptions, kernelName },
      // No LaTeX typesetting: Thebe's default loads MathJax from a CDN. A page that shows LaTeX output
      // hosts MathJax 2 beside itself and names it here (e.g. "mathjax/MathJax.js").
      mathjaxUrl: page.mathjaxUrl ?? '',
    });
    try {
      const server = api.connectToJupyter(config);
      await server.ready;
      const rendermime = api.makeRenderMimeRegistry(config.mathjax);
      const notebook = api.setupNotebookFromBlocks(
        blocks.map((pre) => ({ id: pre.id, source: pre.textContent })),
        config,
        rendermime,
      );
      show('starting a kernel');
      const session = await server.startNewSession(rendermime);
      if (!session) throw new Error('the server gave no session');
      notebook.attachSession(session);
      const cells = notebook.cells.map((cell, index) => {
        const pre = blocks[index];
        const controls = document.createElement('div');
        controls.className = 'cell-controls';
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = 'Run';
        button.dataset.cell = pre.id;
        controls.append(button);
        const output = document.createElement('div');
        output.className = 'cell-output';
        output.dataset.cell = pre.id;
        pre.after(controls, output);
        cell.attachToDOM(output);
        button.addEventListener('click', () => void run(cell, pre, output));
        return { cell, pre, output };
      });
      runAllButton.disabled = false;
      runAllButton.addEventListener('click', async () => {
        for (const { cell, pre, output } of cells) await run(cell, pre, output);
      });
      addEventListener('pagehide', () => void session.shutdown());
      show('ready');
    } catch (error) {
      show(`could not connect: ${error?.message ?? error}`);
      activateButton.disabled = false;
    }
  }

  activateButton.addEventListener('click', () => void activate());
})();
