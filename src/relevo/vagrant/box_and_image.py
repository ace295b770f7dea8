"""The box and the container image built together: the two debootstraps in parallel, the image by a child
`relevo image build` so that Ctrl-C reaches it and it removes its own partial build; the box waits for the
image only to carry it (box.carry_image), after its own debootstrap."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from relevo.errors import ProviderError
from relevo.lxd.build import ImageRecipe
from relevo.progress import Progress
from relevo.vagrant.box import (
    BoxRecipe,
    BuiltBox,
    boxes_cache_dir,
    build_box,
    find_insecure_key,
    required_tools,
)


@dataclass(frozen=True, slots=True)
class ImageResult:
    path: Path
    cached: bool


def image_build_argv(mirror: str, rebuild: bool) -> list[str]:
    """`relevo image build` as a child process: Ctrl-C reaches it too (same process group) and it
    removes its own partial build, which a thread could not be told to do."""
    argv = [sys.executable, "-m", "relevo", "image", "build", "--no-import", "--json", "--mirror", mirror]
    return [*argv, "--rebuild"] if rebuild else argv


def build_box_and_image(
    *, progress: Progress, rebuild: bool = False, box_recipe: BoxRecipe | None = None
) -> tuple[BuiltBox, ImageResult]:
    """The box and the container image, the two debootstraps in parallel (each waits on the mirror and
    on dpkg in turn, so together they take little more than the longer one); the box carries the image."""
    recipe = box_recipe or BoxRecipe(insecure_key=find_insecure_key())
    # The image `relevo image build --mirror` makes (its name holds its key): the box's key holds it too.
    recipe = replace(recipe, image=ImageRecipe(mirror=recipe.mirror).file_name)
    if rebuild or not (boxes_cache_dir() / recipe.file_name()).is_file():
        required_tools()  # fail before the image build starts, not after it has run for minutes
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            progress(line)

    image = subprocess.Popen(
        image_build_argv(recipe.mirror, rebuild),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    stdout: list[str] = []
    stderr_tail: list[str] = []
    stopping = threading.Event()

    def relay() -> None:
        assert image.stdout is not None and image.stderr is not None
        with image.stdout, image.stderr:
            for line in image.stderr:
                stderr_tail[:] = [*stderr_tail[-19:], line.rstrip()]
                # The child's own progress printer stamps its lines "[  1.2s] ...": keep only the text.
                if not stopping.is_set():  # once told to stop, its last words are no news
                    say("image: " + line.rstrip().split("] ", 1)[-1])
            stdout.append(image.stdout.read())

    reader = threading.Thread(target=relay, name="relevo-image-progress", daemon=True)
    reader.start()
    built: list[ImageResult] = []

    def image_built() -> ImageResult:
        """The image build's result, once it has ended (waited for the first time only)."""
        if not built:
            image.wait()
            reader.join(timeout=30)
            if image.returncode != 0:
                raise ProviderError(
                    f"the container image build failed (exit {image.returncode})",
                    command=image_build_argv(recipe.mirror, rebuild),
                    output="\n".join(stderr_tail),
                )
            result = json.loads("".join(stdout))
            built.append(ImageResult(Path(result["tarball"]), bool(result["cached"])))
        return built[0]

    try:
        box = build_box(
            recipe,
            progress=lambda line: say(f"box: {line}"),
            rebuild=rebuild,
            image=lambda: image_built().path,
        )
    except BaseException:
        stopping.set()
        if image.poll() is None:
            image.send_signal(signal.SIGINT)  # it removes its partial build and exits
        image.wait(timeout=120)
        raise
    return box, image_built()
