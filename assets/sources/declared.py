"""Datasets declared in a file, without code: each entry becomes a ``SourceSpec``.

``GIRAFFE_DATASETS`` (or ``--datasets``) names one of two files:

* our YAML (``datasets:`` mapping name -> entry): ``category`` (long_text | short_image |
  interleave | video), ``format`` (``sharegpt``: LLaVA ``conversations`` of ``from``/``value``;
  ``alpaca``; ``openai``: ``messages`` of ``role``/``content``; or the name of a registry source
  whose adapter is reused, e.g. ``llava_video``), ``files`` (local paths or globs, relative to
  the YAML's folder, or ``{hub: org/name, data_files: [...]}``), ``media_dir``, and optional
  ``columns`` / ``tags`` mappings (LLaMA-Factory's names);
* a LLaMA-Factory ``dataset_info.json`` as it is: ``file_name``, ``formatting`` (alpaca or
  sharegpt), ``columns`` (``messages``, ``images``, ``videos``, ``system``, alpaca's ``prompt`` /
  ``query`` / ``response`` / ``history``), ``tags`` (``role_tag``, ``content_tag``, ``user_tag``,
  ``assistant_tag``, ``system_tag``), ``hf_hub_url``. The category is inferred from the media
  columns (videos -> video, images -> short_image, none -> long_text) unless an extra
  ``category`` key gives it; ``media_dir`` defaults to the file's folder, as in LLaMA-Factory.

Declared folders are read-only inputs: rows are read from them in place, media paths must
resolve under ``media_dir`` (``media_outside_root`` otherwise) and nothing is written there.
A bad declaration raises ``DeclarationError`` with one line naming the entry and the field.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from assets.contract.categories import CATEGORIES
from assets.contract.cleaning import IMAGE_PLACEHOLDERS, VIDEO_PLACEHOLDERS
from assets.contract.conversation import image_part, text_part, video_part
from assets.contract.media import MediaResolver, RejectRow
from assets.sources.adapters import Messages, turns_with_media
from assets.sources.registry import SOURCES_BY_NAME, MediaSpec, SourceSpec

ENV_VAR = "GIRAFFE_DATASETS"
FORMATS = ("sharegpt", "alpaca", "openai")
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".csv")

SHAREGPT_COLUMNS = {"messages": "conversations", "system": None, "images": None, "videos": None}
OPENAI_COLUMNS = {**SHAREGPT_COLUMNS, "messages": "messages"}
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None,
                  "system": None, "images": None, "videos": None}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system", "observation_tag": "observation", "function_tag": "function_call"}
OPENAI_TAGS = {**SHAREGPT_TAGS, "role_tag": "role", "content_tag": "content", "user_tag": "user",
               "assistant_tag": "assistant"}
# LLaMA-Factory keys that do not change how rows are read here (ignored), and those we cannot honour.
LF_IGNORED = {"file_sha1", "num_samples", "split", "subset", "folder"}  # subset/folder: hub only, refused there
LF_UNSUPPORTED = {"ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"}
YAML_KEYS = {"category", "format", "files", "media_dir", "columns", "tags", "split", "media_patterns", "notes"}
_PLACEHOLDER_KIND = {**{p: "image" for p in IMAGE_PLACEHOLDERS}, **{p: "video" for p in VIDEO_PLACEHOLDERS}}
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in _PLACEHOLDER_KIND))


class DeclarationError(ValueError):
    """A declaration that cannot be used; the message is one line naming entry and field."""

    def __init__(self, file: Path | str, entry: str | None, field: str | None, message: str):
        where = f"{file}: " + (f"entry {entry!r}: " if entry else "") + (f"field {field!r}: " if field else "")
        super().__init__(where + message)
        self.entry, self.field = entry, field


# --------------------------------------------------------------------------- adapters


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _column(record: Mapping[str, Any], name: str | None, fallbacks: tuple[str, ...] = ()) -> Any:
    for key in ((name,) if name else fallbacks):
        if key in record and record[key] is not None:
            return record[key]
    return None


def ordered_media(turns: list[tuple[str, str]], images: list[str], videos: list[str], media: MediaResolver) -> list[dict]:
    """Media parts in the order their placeholders appear (``<image>`` takes the next image,
    ``<video>`` the next video); without placeholders, images then videos (the LLaVA rule puts
    them before the first user turn)."""
    kinds = [_PLACEHOLDER_KIND[m] for _, text in turns for m in _PLACEHOLDER_RE.findall(text)]
    if not kinds:
        kinds = ["image"] * len(images) + ["video"] * len(videos)
    queues = {"image": list(images), "video": list(videos)}
    if kinds.count("image") != len(images) or kinds.count("video") != len(videos):
        raise RejectRow(
            "media_placeholder_mismatch",
            f"{kinds.count('image')} image and {kinds.count('video')} video placeholder(s) in text but "
            f"{len(images)} image(s) and {len(videos)} video(s)",
        )
    parts = []
    for kind in kinds:
        ref = queues[kind].pop(0)
        parts.append(image_part(media.image(ref)) if kind == "image" else video_part(media.video(ref)))
    return parts


def _roles(tags: Mapping[str, str]) -> dict[str, str]:
    return {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system"}


def _message_turns(messages: Any, tags: Mapping[str, str]) -> list[tuple[str, str]]:
    if not isinstance(messages, list):
        raise RejectRow("malformed_row", f"messages are {type(messages).__name__}, expected list")
    if not messages:
        raise RejectRow("empty_conversation", "no turns")
    roles = _roles(tags)
    turns = []
    for turn in messages:
        if not isinstance(turn, dict):
            raise RejectRow("malformed_row", f"turn is {type(turn).__name__}, expected object")
        role = turn.get(tags["role_tag"])
        if role not in roles:
            raise RejectRow("invalid_role", f"unknown role {role!r} (tags: {sorted(roles)})")
        content = turn.get(tags["content_tag"])
        if isinstance(content, list):  # OpenAI content parts: text parts joined, media as placeholders
            content = "".join(
                (p.get("text") or "") if p.get("type") == "text" else ("<video>" if p.get("type") == "video" else "<image>")
                for p in content if isinstance(p, dict)
            )
        if not isinstance(content, str):
            raise RejectRow("malformed_row", f"turn field {tags['content_tag']!r} is {type(content).__name__}, expected str")
        turns.append((roles[role], content))
    return turns


def _with_system(turns: list[tuple[str, str]], system: Any) -> list[tuple[str, str]]:
    if isinstance(system, str) and system.strip() and not (turns and turns[0][0] == "system"):
        return [("system", system), *turns]
    return turns


def _media_lists(record: Mapping[str, Any], columns: Mapping[str, str | None], lenient: bool) -> tuple[list, list]:
    images = _as_list(_column(record, columns.get("images"), ("images", "image") if lenient else ()))
    videos = _as_list(_column(record, columns.get("videos"), ("videos", "video") if lenient else ()))
    return images, videos


def _finish(turns: list[tuple[str, str]], images: list, videos: list, media: MediaResolver) -> Messages:
    parts = ordered_media(turns, images, videos, media)
    system = [] if not turns or turns[0][0] != "system" else [turns[0]]
    body = turns[len(system):]
    messages = [{"role": "system", "content": [text_part(system[0][1])]}] if system else []
    return messages + turns_with_media(body, parts)


def conversation_adapter(columns: Mapping[str, str | None], tags: Mapping[str, str], lenient: bool, name: str) -> Callable:
    """sharegpt / openai rows: a list of turns under ``columns['messages']``."""

    def adapter(record: dict[str, Any], media: MediaResolver) -> Messages:
        messages = record.get(columns["messages"])
        if messages is None:
            raise RejectRow("malformed_row", f"missing field {columns['messages']!r}")
        system = _column(record, columns.get("system"), ("system",) if lenient else ())
        turns = _with_system(_message_turns(messages, tags), system)
        images, videos = _media_lists(record, columns, lenient)
        return _finish(turns, images, videos, media)

    adapter.__name__ = name
    return adapter


def alpaca_adapter(columns: Mapping[str, str | None], lenient: bool) -> Callable:
    """alpaca rows: instruction (+ input) -> output, after the ``history`` pairs."""

    def alpaca(record: dict[str, Any], media: MediaResolver) -> Messages:
        prompt = record.get(columns["prompt"])
        response = record.get(columns["response"])
        if not isinstance(prompt, str):
            raise RejectRow("malformed_row", f"field {columns['prompt']!r} is {type(prompt).__name__}, expected str")
        if not isinstance(response, str):
            raise RejectRow("malformed_row", f"field {columns['response']!r} is {type(response).__name__}, expected str")
        query = record.get(columns["query"]) if columns.get("query") else None
        user = prompt if not (isinstance(query, str) and query.strip()) else f"{prompt}\n{query}"
        turns: list[tuple[str, str]] = []
        for pair in _as_list(_column(record, columns.get("history"), ("history",) if lenient else ())):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RejectRow("malformed_row", "history entry is not a [prompt, response] pair")
            turns += [("user", pair[0]), ("assistant", pair[1])]
        turns += [("user", user), ("assistant", response)]
        turns = _with_system(turns, _column(record, columns.get("system"), ("system",) if lenient else ()))
        images, videos = _media_lists(record, columns, lenient)
        return _finish(turns, images, videos, media)

    return alpaca


def registry_adapter(base: SourceSpec, columns: Mapping[str, str | None]) -> Callable:
    """A registry source's adapter over renamed columns (``columns``: published -> this file's)."""
    renames = {k: v for k, v in columns.items() if v and v != k}

    def adapter(record: dict[str, Any], media: MediaResolver) -> Messages:
        if renames:
            record = {**record, **{k: record.get(v) for k, v in renames.items()}}
        return base.adapter(record, media)

    adapter.__name__ = base.adapter.__name__
    return adapter


# --------------------------------------------------------------------------- entries


def _mapping(file: Path, entry: str, field: str, value: Any, allowed: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()):
        raise DeclarationError(file, entry, field, "must map names to strings")
    unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
    if unknown:
        raise DeclarationError(file, entry, field, f"unknown key(s) {unknown}; known: {sorted(allowed)}")
    return dict(value)


def asset_name(file: Path, raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw.strip())
    if not name or not re.match(r"[A-Za-z_]", name):
        raise DeclarationError(file, raw, None, "the name must start with a letter or _")
    if name in SOURCES_BY_NAME:
        raise DeclarationError(file, raw, None, f"the name is taken by the registry source {name!r}; choose another")
    return name


def _local_files(file: Path, entry: str, field: str, patterns: list[Any], base: Path) -> tuple[str, ...]:
    out = []
    for p in patterns:
        if not isinstance(p, str) or not p.strip():
            raise DeclarationError(file, entry, field, f"{p!r} is not a path")
        path = Path(p).expanduser()
        path = path if path.is_absolute() else base / path
        if path.is_dir():  # a folder: every data file in it (LLaMA-Factory's file_name may be one)
            found = sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in DATA_SUFFIXES and f.is_file())
            if not found:
                raise DeclarationError(file, entry, field, f"folder {path} holds no {'/'.join(DATA_SUFFIXES)} file")
            out += found
            continue
        if not any(Path(m).is_file() for m in glob.glob(str(path), recursive=True)):
            raise DeclarationError(file, entry, field, f"{path} matches no file")
        out.append(str(path))
    suffixes = {Path(f).suffix.lower() for f in out}
    odd = sorted(suffixes - set(DATA_SUFFIXES))
    if odd:
        raise DeclarationError(file, entry, field, f"cannot read {odd} files; use {'/'.join(DATA_SUFFIXES)}")
    families = {"json" if s in (".json", ".jsonl", ".ndjson") else s.lstrip(".") for s in suffixes}
    if len(families) > 1:
        raise DeclarationError(file, entry, field, f"files of one dataset must share one type, got {sorted(suffixes)}")
    return tuple(out)


def _media_dir(file: Path, entry: str, value: Any, base: Path, default: Path | None) -> Path | None:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise DeclarationError(file, entry, "media_dir", f"{value!r} is not a folder path")
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_dir():
        raise DeclarationError(file, entry, "media_dir", f"{path} is not a folder")
    return path


def _category(file: Path, entry: str, value: Any, columns: Mapping[str, Any]) -> str:
    if value is None:
        return "video" if columns.get("videos") else "short_image" if columns.get("images") else "long_text"
    if value not in CATEGORIES:
        raise DeclarationError(file, entry, "category", f"{value!r} is not one of {list(CATEGORIES)}")
    return value


def _spec(file: Path, name: str, raw_name: str, *, category: str, adapter: Callable, base_spec: SourceSpec | None,
          files_root: Path | None, data_files: tuple[str, ...], hub: str | None, media_dir: Path | None,
          media_patterns: tuple[str, ...], split: str, task: str) -> SourceSpec:
    if media_dir is not None or media_patterns:
        media = MediaSpec(kind="files", patterns=media_patterns,
                          roots=(str(media_dir),) if media_dir is not None else ("",),
                          notes="declared media folder (read-only input)")
    else:
        media = MediaSpec(kind="none")
    return SourceSpec(
        name=name, category=category, task=task, hub_id=hub or str(files_root), data_files=data_files,
        adapter=adapter, sample=None, media=media, split=split,
        group_key=base_spec.group_key if base_spec else None, group_size=base_spec.group_size if base_spec else 1,
        license="(declared by the user)", notes=f"declared as {raw_name!r} in {file}",
        origin="declared", files_root=str(files_root) if files_root is not None else None,
    )


def _yaml_entry(file: Path, raw_name: str, entry: Any) -> SourceSpec:
    name = asset_name(file, raw_name)
    if not isinstance(entry, Mapping):
        raise DeclarationError(file, raw_name, None, "an entry must be a mapping of fields")
    unknown = sorted(set(entry) - YAML_KEYS)
    if unknown:
        raise DeclarationError(file, raw_name, unknown[0], f"unknown field; known: {sorted(YAML_KEYS)}")
    base = file.parent
    fmt = entry.get("format")
    base_spec = None
    if fmt in FORMATS:
        defaults = {"sharegpt": SHAREGPT_COLUMNS, "openai": OPENAI_COLUMNS, "alpaca": ALPACA_COLUMNS}[fmt]
        columns = {**defaults, **_mapping(file, raw_name, "columns", entry.get("columns"), defaults)}
        tag_defaults = OPENAI_TAGS if fmt == "openai" else SHAREGPT_TAGS
        tags = {**tag_defaults, **_mapping(file, raw_name, "tags", entry.get("tags"), tag_defaults)}
        adapter = alpaca_adapter(columns, True) if fmt == "alpaca" else conversation_adapter(columns, tags, True, fmt)
    elif isinstance(fmt, str) and fmt in SOURCES_BY_NAME:
        base_spec = SOURCES_BY_NAME[fmt]
        columns = _mapping(file, raw_name, "columns", entry.get("columns"), None)
        if entry.get("tags"):
            raise DeclarationError(file, raw_name, "tags", f"tags apply to sharegpt/openai formats, not to the registry format {fmt!r}")
        adapter = registry_adapter(base_spec, columns)
    else:
        raise DeclarationError(file, raw_name, "format", f"{fmt!r} is not one of {list(FORMATS)} or a registry source ({', '.join(SOURCES_BY_NAME)})")
    if "category" not in entry and base_spec is None:
        raise DeclarationError(file, raw_name, "category", f"missing; one of {list(CATEGORIES)}")
    category = _category(file, raw_name, entry.get("category", base_spec.category if base_spec else None), columns)
    files = entry.get("files")
    hub, files_root, data_files = None, None, ()
    if isinstance(files, Mapping):
        hub = files.get("hub")
        if not isinstance(hub, str) or hub.count("/") != 1:
            raise DeclarationError(file, raw_name, "files.hub", f"{hub!r} is not a hub repo id (org/name)")
        data_files = tuple(_as_list(files.get("data_files")))
        if not data_files or not all(isinstance(f, str) for f in data_files):
            raise DeclarationError(file, raw_name, "files.data_files", "list the repo's data files (paths or globs)")
    elif isinstance(files, (str, list)) and files:
        files_root = base
        data_files = _local_files(file, raw_name, "files", _as_list(files), base)
    else:
        raise DeclarationError(file, raw_name, "files", "give local paths/globs, or {hub: org/name, data_files: [...]}")
    media_dir = _media_dir(file, raw_name, entry.get("media_dir"), base, None)
    patterns = tuple(_as_list(entry.get("media_patterns")))
    if patterns and hub is None:
        raise DeclarationError(file, raw_name, "media_patterns", "only for hub datasets (local media go in media_dir)")
    if category in ("short_image", "interleave", "video") and media_dir is None and not patterns:
        raise DeclarationError(file, raw_name, "media_dir", f"a {category} dataset needs the folder its media paths resolve in")
    split = entry.get("split", "train")
    return _spec(file, name, raw_name, category=category, adapter=adapter, base_spec=base_spec, files_root=files_root,
                 data_files=data_files, hub=hub, media_dir=media_dir, media_patterns=patterns, split=str(split),
                 task=f"Declared dataset ({fmt})")


def _llamafactory_entry(file: Path, raw_name: str, entry: Any) -> SourceSpec:
    name = asset_name(file, raw_name)
    if not isinstance(entry, Mapping):
        raise DeclarationError(file, raw_name, None, "an entry must be an object")
    for key in sorted(LF_UNSUPPORTED & set(entry)):
        if not entry.get("hf_hub_url") and not entry.get("file_name"):
            raise DeclarationError(file, raw_name, key, "is not supported here; give file_name or hf_hub_url")
    if entry.get("ranking"):
        raise DeclarationError(file, raw_name, "ranking", "preference (ranking) datasets are not training conversations here")
    known = {"file_name", "hf_hub_url", "formatting", "columns", "tags", "category", "media_dir", "ranking"} | LF_IGNORED | LF_UNSUPPORTED
    unknown = sorted(set(entry) - known)
    if unknown:
        raise DeclarationError(file, raw_name, unknown[0], f"unknown field; known: {sorted(known)}")
    fmt = entry.get("formatting", "alpaca")
    if fmt not in ("alpaca", "sharegpt"):
        raise DeclarationError(file, raw_name, "formatting", f"{fmt!r} is not alpaca or sharegpt")
    defaults = SHAREGPT_COLUMNS if fmt == "sharegpt" else ALPACA_COLUMNS
    columns = {**defaults, **_mapping(file, raw_name, "columns", entry.get("columns"), {**defaults, "tools": None})}
    tags = {**SHAREGPT_TAGS, **_mapping(file, raw_name, "tags", entry.get("tags"), SHAREGPT_TAGS)}
    adapter = conversation_adapter(columns, tags, False, "sharegpt") if fmt == "sharegpt" else alpaca_adapter(columns, False)
    category = _category(file, raw_name, entry.get("category"), columns)
    base = file.parent
    hub, files_root, data_files = None, None, ()
    if entry.get("hf_hub_url"):
        hub = entry["hf_hub_url"]
        if not isinstance(hub, str) or hub.count("/") != 1:
            raise DeclarationError(file, raw_name, "hf_hub_url", f"{hub!r} is not a hub repo id (org/name)")
        for key in ("subset", "folder"):
            if entry.get(key):
                raise DeclarationError(file, raw_name, key, "is not supported here; name the repo's files with our "
                                       "YAML instead (files: {hub: org/name, data_files: [...]})")
        data_files = ()  # datasets finds the repo's data files itself
    elif isinstance(entry.get("file_name"), str):
        files_root = base
        data_files = _local_files(file, raw_name, "file_name", [entry["file_name"]], base)
    else:
        raise DeclarationError(file, raw_name, "file_name", "missing (or give hf_hub_url)")
    media_dir = _media_dir(file, raw_name, entry.get("media_dir"), base, base.resolve() if (columns.get("images") or columns.get("videos")) else None)
    return _spec(file, name, raw_name, category=category, adapter=adapter, base_spec=None, files_root=files_root,
                 data_files=data_files, hub=hub, media_dir=media_dir, media_patterns=(), split=str(entry.get("split", "train")),
                 task=f"Declared dataset (LLaMA-Factory {fmt})")


def load_declarations(path: str | Path) -> list[SourceSpec]:
    """The declared datasets of ``path`` (our YAML or a LLaMA-Factory ``dataset_info.json``)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise DeclarationError(file, None, None, "no such file")
    text = file.read_text(encoding="utf-8", errors="replace")
    if file.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise DeclarationError(file, None, None, f"not valid JSON ({exc})") from None
        if not isinstance(doc, Mapping) or not doc:
            raise DeclarationError(file, None, None, "a dataset_info.json maps dataset names to entries")
        entries, build = doc, _llamafactory_entry
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DeclarationError(file, None, None, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(doc, Mapping) and "datasets" in doc:
            doc = doc["datasets"]
        if not isinstance(doc, Mapping) or not doc:
            raise DeclarationError(file, None, "datasets", "map dataset names to entries")
        entries, build = doc, _yaml_entry
    specs = [build(file, str(raw_name), entry) for raw_name, entry in entries.items()]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DeclarationError(file, dup[0], None, "two entries map to this asset name")
    return specs


def all_sources(datasets_file: str | Path | None) -> tuple[SourceSpec, ...]:
    """The registry's sources followed by the declared ones (none without a file)."""
    if not datasets_file:
        return tuple(SOURCES_BY_NAME.values())
    return (*SOURCES_BY_NAME.values(), *load_declarations(datasets_file))
