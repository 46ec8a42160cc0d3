# IPython kernel settings of the polykernel Python image, installed as /etc/ipython/ipython_kernel_config.py
# (IPython's system-wide config directory; a profile's own config still overrides it).
# Each kernel runs in a container that is thrown away with it: nothing here is meant to outlive one kernel.
c = get_config()  # noqa: F821

# History in an in-memory SQLite database: no history.sqlite to create in /tmp at start and no
# IPythonHistorySavingThread waking up to write every cell. In/Out/_i/%history/history_request work as before
# (search and tail write the pending cells to that database first); only the container-local file is gone.
c.HistoryManager.hist_file = ':memory:'

# ipykernel sleeps 0.5 ms (0.7-2 ms of wall time per cell, measured) before each execute_reply, against output that
# might reach clients late; its stdout/stderr flush() just before already waits until the output is sent on
# iopub (and clients, the service too, end a cell on iopub's idle status, which follows it there anyway).
c.IPythonKernel._execute_sleep = 0.0
