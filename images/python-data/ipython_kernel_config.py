
# --- appended by images/python-data ---
# matplotlib keeps its font list in MPLCONFIGDIR, /tmp here: a fresh tmpfs in every kernel's container, so
# without this its first import in each kernel would scan every font again (the image's root fs is
# read-only at run time, and matplotlib only uses a writable directory). The list made when the image was
# built is copied there before any cell runs; a kernel whose /tmp already has one keeps it.
def _polykernel_seed_matplotlib_fonts():
    import glob
    import os
    import shutil

    target = os.environ.get("MPLCONFIGDIR")
    if not target:
        return
    for source in glob.glob("/usr/share/polykernel/matplotlib/fontlist-v*.json"):
        dest = os.path.join(target, os.path.basename(source))
        try:
            if not os.path.exists(dest):
                shutil.copyfile(source, dest)
        except OSError:
            pass  # matplotlib then builds its own list, as it would without this


_polykernel_seed_matplotlib_fonts()
del _polykernel_seed_matplotlib_fonts
