"""Package list for the `tapir` namespace (pyproject.toml holds everything else).

The source tree keeps appliance/, hardware/ and plugins/ at the top level, as the
design asks; each is installed as tapir.<folder>. setuptools' find tools do not
follow a package-dir mapping, so the packages are listed here from the folders.
"""

from setuptools import find_packages, setup

TOPS = ("appliance", "hardware", "plugins")
packages = []
for top in TOPS:
    packages.append(f"tapir.{top}")
    packages += [f"tapir.{top}.{sub}" for sub in find_packages(top)]

setup(packages=packages)
