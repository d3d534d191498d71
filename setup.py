"""Build hook: the top-level ``configs/`` folder ships inside the wheel as ``i2e_lightning/configs``.

Everything else is declared in pyproject.toml. The configs stay at the top of the checkout, where a
template's users look for them; a wheel needs them inside the package so that
``i2e-lightning fit --config fashion_mnist`` works wherever it is installed.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's configs/ directly
            return
        for src in sorted(CONFIGS.rglob("*.yaml")):
            dst = Path(self.build_lib, "i2e_lightning", "configs", src.relative_to(CONFIGS))
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": BuildPyWithConfigs})
