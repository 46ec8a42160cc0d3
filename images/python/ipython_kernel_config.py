# IPython kernel settings of the polykernel Python image, installed as /etc/ipython/ipython_kernel_config.py
# (IPython's system-wide config directory; a profile's own config still overrides it).
# Each kernel runs in a container that is thrown away with it: nothing here is meant to outlive one kernel.
c = get_config()  # noqa: F821

# History in an in-memory SQLite database: no history.sqlite to create in /tmp at start and no
# IPythonHistorySavingThread waking up to write every cell. In/Out/_i/%history/history_request work as before
# (search and tail write the pending cells to that database first); only the container-local file is gone.
c.HistoryManager.hist_file = ':memory:'

# ipykernel's sleep before each execute_reply (_execute_sleep, 0.5 ms) stays: without it the last stream
# output of a cell was seen to reach the service after the cell's idle status, i.e. to be lost (ipykernel's
# own FIXME next to that sleep describes it).
