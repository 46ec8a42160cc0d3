"""Starts ipykernel as `python3 -m ipykernel_launcher` does, but without its debugger.

ipykernel 6 imports debugpy (and through pydevd, pkg_resources) when it is imported, whether a debugger is
ever used or not: a quarter of its import time, a fifth of the kernel's start-up CPU. It has no setting to
skip that, so this makes that one import fail, which is how ipykernel runs wherever debugpy is not
installed: no debugger (debug_request gets an empty debug_reply), one warning on stderr at start. This
image's kernelspec never advertised the debugger anyway (its metadata has no "debugger": true), nor does
this ipykernel's kernel_info_reply. debugpy stays importable for user code (the block is undone at once).
POLYKERNEL_PYTHON_DEBUGGER=1 in the kernel's environment keeps ipykernel's debugger.
"""

import os
import sys

if __name__ == "__main__":
    # As ipykernel_launcher: the kernel puts the CWD back on sys.path itself (InteractiveShellApp.init_path).
    if sys.path[0] == "":
        del sys.path[0]

    if os.environ.get("POLYKERNEL_PYTHON_DEBUGGER") == "1":
        from ipykernel import kernelapp as app
    else:
        blocked = "debugpy" not in sys.modules
        if blocked:
            sys.modules["debugpy"] = None  # type: ignore[assignment]  # makes `import debugpy` raise ImportError
        try:
            from ipykernel import kernelapp as app
        finally:
            if blocked and sys.modules.get("debugpy", 0) is None:
                del sys.modules["debugpy"]

    app.launch_new_instance()
