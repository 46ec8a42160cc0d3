"""Prints, as JSON, what a lesson can import in this image: the interpreter, then every installed
distribution (Debian's python3-* packages) with its version and the top-level modules it provides.

Run when the image is built (its Dockerfile writes /usr/share/polykernel/packages.json); scripts/build-images.mjs
turns that file into the image's org.polykernel.packages label, which the service shows in the kernelspec's
metadata. The standard library is not listed: every Python has it.
"""

import importlib.metadata as metadata
import importlib.util
import json
import platform
import sys


def importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def main():
    modules_of = {}
    for module, dists in metadata.packages_distributions().items():
        # Private modules (_cffi_backend, _distutils_hack) and odd file names are not something to import.
        if module.startswith("_") or not module.isidentifier() or not importable(module):
            continue
        for dist in dists:
            modules_of.setdefault(dist.lower(), set()).add(module)
    entries = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        modules = modules_of.get((name or "").lower())
        if not name or not modules or name.lower() in entries:
            continue
        entries[name.lower()] = {"name": name, "version": dist.version, "import": sorted(modules)}
    packages = [{"name": "python", "version": platform.python_version()}]
    packages += sorted(entries.values(), key=lambda entry: entry["name"].lower())
    json.dump(packages, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
