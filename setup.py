"""Build step: the wheel carries sql/ and schemas/, which live at the repository's top level by design,
inside the package as pipelines/_data/ (pipelines/infra/paths.py finds them there when installed). The
repository's folders stay the one source: nothing is copied in a checkout or an editable install."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGED_DATA_DIR = Path("pipelines", "_data")
PACKAGED_FOLDERS = ("sql", "schemas")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            for folder in PACKAGED_FOLDERS:
                self.copy_tree(folder, str(Path(self.build_lib) / PACKAGED_DATA_DIR / folder))


setup(cmdclass={"build_py": BuildPyWithData})
