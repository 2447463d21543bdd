"""The native inference runner: a checkpoint with its position method, batched greedy decoding.

* **Model**: ``training.positions.apply.load_with_position_method`` (the method recorded in
  the checkpoint's config is re-applied, so an M-RoPE++ or V2PE checkpoint is evaluated with
  its own positions) and ``training.processor.load_processor``.
* **Prompt**: the model's chat template (one user turn: the images, then the video, then the
  benchmark's question text) with a generation prompt.
* **Images**: the processor's image processor (its own resize rule and patching); each image
  placeholder grows to that image's merged-token count, as ``Qwen2VLProcessor`` does.
* **Videos**: the project's video path (``assets.video.decode.sample_video``: qwen-vl-utils' 2 fps
  rule or a fixed frame count, smart_resize under per-frame and per-video pixel budgets, frames
  resized with torchvision's bicubic antialias as qwen-vl-utils does, hybrid resolution
  (L, m, s) = (4, 240, 3) when more than 512 frames are sampled, as the paper does above 512
  frames; ``assets.video.inputs`` for ``pixel_values_videos`` / ``video_grid_thw`` and one vision
  block per grid row).
* **Batches**: items sorted by media (same video together, similar image counts together),
  left-padded; ``mm_token_type_ids`` marks image/video tokens (transformers 5 needs it).
  A batch that fails is retried item by item, so one bad item cannot sink its neighbours;
  an item that still fails is a prediction row with ``status = "error"`` and the reason.
* **Answers**, ``RunConfig.answer_mode``:

  - ``"generate"`` (the paper's protocol, the hub default): greedy (``do_sample=False``),
    ``max_new_tokens`` small; the new tokens are decoded and parsed (``eval.parsing``);
    unparseable output is scored wrong and kept verbatim.
  - ``"likelihood"`` (lm-evaluation-harness-style multiple choice: a tiny model never writes a
    parseable answer, so its generation accuracy is always 0): each
    candidate answer (``Yes``/``No``, or the item's option letters) is scored by the summed
    log-probability of its tokens right after the same generation prompt; the prediction is the
    argmax. One forward pass over the prompt when every candidate is one token (next-token
    log-softmax), otherwise one pass over prompt + candidate per candidate slot (the batch's
    i-th candidates together, right-padded). ``raw_output`` is the chosen candidate's text and
    ``extra.candidate_logprobs`` keeps every candidate's score.
  - ``"cloze"`` (the embedded default; the cloze formulation of OLMES and lm-eval-harness's ``acc_norm``): as
    ``likelihood``, but a multiple-choice item's candidates are its options' *texts* ("red",
    "top left"), each scored by its log-probability per UTF-8 byte, so a longer option is not
    penalised for its length; yes/no items are scored as in ``likelihood``. Why: picking the
    letter of the option that matches is a skill of its own (match the option, then copy the
    letter before it) that small models lack while they already know the answer; the letter
    form measures that skill, the cloze form the knowledge (OLMES, Gu et al. 2024, scores
    models that cannot yet answer with letters this way). Measured on the embedded tiny model:
    trained on letter answers, 30-55% held out after 1,500-4,000 steps about objects described
    in words and 33% after 2,000 about a drawn shape (chance 29%), while it names the colour of a
    drawn shape 98-100% of the time (docs/evaluation.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assets.contract.chat_template import IMAGE_PAD, IMAGE_PLACEHOLDER, VISION_END, VISION_START, render_chatml
from assets.contract.media import RejectRow
from assets.contract.progress import Progress
from assets.video.decode import DecodeError, sample_video
from assets.video.grid import PlanError
from assets.video.inputs import expand_videos, mm_token_type_ids, video_pixel_values
from assets.video.plan import VideoSamplingConfig
from eval.items import YES_NO, EvalItem
from eval.parsing import parse_answer

ANSWER_MODES = ("generate", "likelihood", "cloze")
SCORED_MODES = ("likelihood", "cloze")
"""The answer modes that score candidates' log-probabilities instead of generating."""
EMBEDDED_ANSWER_MODE = "cloze"
"""The embedded demo's mode (its tiny base is taught and scored this way; hub data generates)."""
YES_NO_CANDIDATES = {"yes": "Yes", "no": "No"}
"""Likelihood mode: label -> continuation scored for yes/no items (how chat models answer)."""


@dataclass(frozen=True)
class RunConfig:
    batch_size: int = 4
    max_new_tokens: int = 8
    video: VideoSamplingConfig = field(default_factory=VideoSamplingConfig)
    """How benchmark videos are sampled (``VideoSamplingConfig.fixed_count`` for N frames a video)."""
    answer_mode: str = "generate"
    """``"generate"`` (greedy + parsing), ``"likelihood"`` (argmax candidate log-probability: yes/no
    or the option letters) or ``"cloze"`` (the options' texts, per byte)."""

    def __post_init__(self) -> None:
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"answer_mode must be one of {ANSWER_MODES}, got {self.answer_mode!r}")


def candidates(item: EvalItem, mode: str = "likelihood") -> dict[str, str]:
    """Scored modes: {label: continuation text}; the label is what is scored against the answer
    (the option letter), the text what the model's log-probability is taken of: the letter
    itself, or in ``cloze`` mode the option's text."""
    if item.answer_type == YES_NO:
        return dict(YES_NO_CANDIDATES)
    options = {str(k).strip().upper(): str(v).strip() for k, v in item.options.items()}
    if not options:
        raise RejectRow("no_options", f"{item.item_id}: a choice item without options cannot be scored by likelihood")
    if mode != "cloze":
        return {k: k for k in sorted(options)}
    texts = {k: options[k] for k in sorted(options)}
    blank = [k for k, v in texts.items() if not v]
    if blank:
        raise RejectRow("empty_option", f"{item.item_id}: options {blank} have no text to score in cloze mode")
    return texts


def choice_scores(item: EvalItem, texts: dict[str, str], logprobs: dict[str, float], mode: str) -> dict[str, float]:
    """What the prediction is the argmax of: the log-probabilities, per UTF-8 byte of the
    candidate's text (``texts``, from :func:`candidates`) in ``cloze`` mode (lm-eval-harness ``acc_norm``)."""
    if mode != "cloze" or item.answer_type == YES_NO:
        return logprobs
    return {k: v / max(1, len(texts[k].encode())) for k, v in logprobs.items()}


@dataclass
class Prepared:
    item: EvalItem
    text: str
    images: list[Any]
    video_pixels: np.ndarray | None = None
    video_grids: np.ndarray | None = None
    video_plan: dict | None = None
    image_inputs: tuple[Any, Any] | None = None
    """(pixel_values, image_grid_thw) of ``images``, computed once (training reuses an item)."""


def load_checkpoint(path: str | Path, device: str | None = None):
    """(model, processor) with the checkpoint's recorded position method re-applied."""
    import torch

    from training.positions.apply import load_with_position_method
    from training.processor import load_processor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"dtype": torch.bfloat16} if device.startswith("cuda") else {}
    model = load_with_position_method(path, **kwargs).to(device).eval()
    return model, load_processor(path)


class Runner:
    def __init__(self, model, processor, model_id: str, cfg: RunConfig = RunConfig(), log: Callable[[str], None] | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.cfg = cfg
        self.log = log or (lambda msg: None)
        self._video_cache: tuple[str, tuple] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, model_id: str, cfg: RunConfig = RunConfig(), log=None, device=None) -> Runner:
        model, processor = load_checkpoint(path, device)
        return cls(model, processor, model_id, cfg, log)

    # -- inputs ---------------------------------------------------------------------------

    def render(self, item: EvalItem) -> str:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in item.images]
        if item.video:
            content.append({"type": "video"})
        content.append({"type": "text", "text": item.prompt})
        messages = [{"role": "user", "content": content}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_chatml(messages, add_generation_prompt=True)

    def _video(self, path: str) -> tuple[np.ndarray, np.ndarray, dict]:
        if self._video_cache and self._video_cache[0] == path:
            return self._video_cache[1]
        try:
            sampled = sample_video(path, self.cfg.video)
        except (DecodeError, PlanError) as exc:
            raise RejectRow(f"video_{exc.reason}", exc.detail) from None
        pixels, grids = video_pixel_values(sampled.frames, sampled.plan.frame_rows, sampled.plan.grids)
        n = len(sampled.plan.indices)
        plan = {
            "n_frames": n,
            "grids": [list(g) for g in sampled.plan.grids],
            "hybrid": sampled.plan.hybrid is not None,
            # seconds one temporal patch (2 frames) spans: Qwen2.5-VL's second_per_grid_ts
            "seconds_per_patch": 2 * sampled.plan.duration / n,
        }
        self._video_cache = (path, (pixels, grids, plan))
        return pixels, grids, plan

    def prepare(self, item: EvalItem) -> Prepared:
        from PIL import Image

        text = self.render(item)
        images = []
        for p in item.images:
            try:
                with Image.open(p) as img:
                    images.append(img.convert("RGB"))
            except Exception as exc:  # missing or unreadable file
                raise RejectRow("unreadable_image", f"{p}: {exc}") from None
        prepared = Prepared(item, text, images)
        if item.video:
            pixels, grids, plan = self._video(item.video)
            prepared.text = expand_videos(text, [grids.tolist()])
            prepared.video_pixels, prepared.video_grids, prepared.video_plan = pixels, grids, plan
        return prepared

    def encode(self, batch: Sequence[Prepared]):
        """Tokenised, left-padded inputs for a batch; image pads grown per image."""
        import torch

        texts = [p.text for p in batch]
        inputs: dict[str, Any] = {}
        if any(p.images for p in batch):
            ip = self.processor.image_processor
            for p in batch:  # the image processor treats every image on its own: per item, once
                if p.images and p.image_inputs is None:
                    vis = ip(images=p.images, return_tensors="pt")
                    p.image_inputs = (vis["pixel_values"], vis["image_grid_thw"])
            with_images = [p.image_inputs for p in batch if p.images]
            grids = torch.cat([g for _, g in with_images])
            merge = int(getattr(ip, "merge_size", 2)) ** 2
            counts = iter((grids.prod(-1) // merge).tolist())
            texts = [self._grow_images(t, counts) for t in texts]
            inputs["pixel_values"] = torch.cat([v for v, _ in with_images])
            inputs["image_grid_thw"] = grids
        enc = self.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
        inputs["input_ids"], inputs["attention_mask"] = enc["input_ids"], enc["attention_mask"]
        videos = [p for p in batch if p.video_pixels is not None]
        if videos:
            inputs["pixel_values_videos"] = torch.from_numpy(np.concatenate([p.video_pixels for p in videos]))
            inputs["video_grid_thw"] = torch.from_numpy(np.concatenate([p.video_grids for p in videos]))
            if "qwen2_5" in str(getattr(self.model.config, "model_type", "")):  # absolute time in M-RoPE
                seconds = [p.video_plan["seconds_per_patch"] for p in videos for _ in range(len(p.video_grids))]
                inputs["second_per_grid_ts"] = torch.tensor(seconds, dtype=torch.float32)
        inputs["mm_token_type_ids"] = mm_token_type_ids(inputs["input_ids"], self.tokenizer)
        return inputs

    @staticmethod
    def _grow_images(text: str, counts) -> str:
        pieces = text.split(IMAGE_PLACEHOLDER)
        out = [pieces[0]]
        for rest in pieces[1:]:
            out += [VISION_START + IMAGE_PAD * int(next(counts)) + VISION_END, rest]
        return "".join(out)

    # -- generation -------------------------------------------------------------------------

    def _to_device(self, inputs: dict) -> dict:
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        for k, v in inputs.items():
            v = v.to(device)
            inputs[k] = v.to(dtype) if k.startswith("pixel_values") else v  # second_per_grid_ts stays float32
        return inputs

    def generate(self, batch: Sequence[Prepared]) -> tuple[list[str], list[int]]:
        import torch

        inputs = self._to_device(self.encode(batch))
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.cfg.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts, inputs["attention_mask"].sum(1).tolist()

    def candidate_ids(self, item: EvalItem) -> dict[str, list[int]]:
        """{label: token ids of its continuation}, tokenised on their own (as lm-eval-harness
        does with a continuation) and appended to the prompt's ids."""
        out = {k: self.tokenizer(text, add_special_tokens=False)["input_ids"] for k, text in candidates(item, self.cfg.answer_mode).items()}
        empty = [k for k, ids in out.items() if not ids]
        if empty:
            raise RejectRow("empty_candidate", f"{item.item_id}: candidates {empty} tokenise to nothing")
        return out

    def score(self, batch: Sequence[Prepared]) -> tuple[list[dict[str, float]], list[int]]:
        """Likelihood mode: per item {label: sum of log p(candidate tokens | prompt)}, prompt lengths."""
        import torch

        inputs = self._to_device(self.encode(batch))
        counts = inputs["attention_mask"].sum(1).tolist()
        cands = [self.candidate_ids(p.item) for p in batch]
        out: list[dict[str, float]] = [{} for _ in batch]
        with torch.no_grad():
            if all(len(ids) == 1 for c in cands for ids in c.values()):  # one pass, next-token log-probs
                logp = torch.log_softmax(self.model(**inputs, logits_to_keep=1).logits[:, -1].float(), -1)
                for b, c in enumerate(cands):
                    out[b] = {k: float(logp[b, ids[0]]) for k, ids in c.items()}
                return out, counts
            for j in range(max(len(c) for c in cands)):  # the j-th candidate of every item together
                conts = [list(c.items())[j] if j < len(c) else (None, []) for c in cands]
                x, width = self._with_continuations(inputs, [ids for _, ids in conts])
                # with n prompt columns, positions n-1 .. n+width-2 predict the candidate tokens n .. n+width-1
                logits = self.model(**x, logits_to_keep=width + 1).logits[:, :width].float()
                logp = torch.log_softmax(logits, -1)
                for b, (label, ids) in enumerate(conts):
                    if label is not None:
                        tok = torch.tensor(ids, device=logp.device)
                        out[b][label] = float(logp[b, torch.arange(len(ids), device=logp.device), tok].sum())
        return out, counts

    def _with_continuations(self, inputs: dict, conts: Sequence[Sequence[int]]) -> tuple[dict, int]:
        """``inputs`` (left-padded prompts) with each row's continuation token ids appended on the
        right (right-padded to the longest); (new inputs, width of the continuation block)."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(ids) for ids in conts)
        ext = torch.full((len(conts), width), pad, dtype=inputs["input_ids"].dtype)
        mask = torch.zeros((len(conts), width), dtype=inputs["attention_mask"].dtype)
        for b, ids in enumerate(conts):
            ext[b, : len(ids)] = torch.tensor(list(ids), dtype=ext.dtype)
            mask[b, : len(ids)] = 1
        device = inputs["input_ids"].device
        x = dict(inputs)
        x["input_ids"] = torch.cat([inputs["input_ids"], ext.to(device)], 1)
        x["attention_mask"] = torch.cat([inputs["attention_mask"], mask.to(device)], 1)
        x["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ext).to(device)], 1)
        return x, width

    def answer_ids(self, item: EvalItem) -> list[int]:
        """The gold continuation: the candidate the likelihood mode scores, or, for a training
        item that answers in words (``extra.target_text``, e.g. a colour name), those words."""
        text = item.extra.get("target_text")
        if text:
            return self.tokenizer(str(text), add_special_tokens=False)["input_ids"]
        return self.candidate_ids(item)[item.answer]

    def training_batch(self, batch: Sequence[Prepared]) -> dict:
        """Model inputs that teach each item's answer as the likelihood mode scores it: the
        prompt (as ``encode`` builds it) followed by the gold candidate and ``<|im_end|>``.
        ``logits_to_keep`` covers the continuation block only; ``_target`` (batch x block,
        -100 on padding) holds the tokens that ``logits[:, :block]`` must predict."""
        import torch

        inputs = self.encode(batch)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        conts = [self.answer_ids(p.item) + [end] for p in batch]
        x, width = self._with_continuations(inputs, conts)
        target = torch.full((len(conts), width), -100, dtype=torch.long)
        for b, ids in enumerate(conts):
            target[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        x["logits_to_keep"] = width + 1
        x["_target"] = target
        return x

    def _row(
        self,
        item: EvalItem,
        raw: str,
        n_tokens: int | None,
        error: RejectRow | None = None,
        plan: dict | None = None,
        logprobs: dict[str, float] | None = None,
    ) -> dict:
        extra = dict(item.extra)
        extra["answer_mode"] = self.cfg.answer_mode
        extra["n_choices"] = 2 if item.answer_type == YES_NO else len(item.options)  # chance = 1 / n_choices
        if error:
            prediction = None
        elif logprobs is not None:
            texts = candidates(item, self.cfg.answer_mode)
            ranked = choice_scores(item, texts, logprobs, self.cfg.answer_mode)
            prediction = max(ranked, key=ranked.__getitem__)  # first label on a tie
            raw = texts[prediction]
            extra["candidate_logprobs"] = {k: round(v, 6) for k, v in logprobs.items()}
            if ranked is not logprobs:
                extra["candidate_scores"] = {k: round(v, 6) for k, v in ranked.items()}
        else:
            prediction = parse_answer(raw, item.answer_type, item.options)
        status = "error" if error else ("ok" if prediction is not None else "unparseable")
        if plan:
            extra["video_plan"] = plan
        return {
            "benchmark": item.benchmark,
            "model": self.model_id,
            "item_id": item.item_id,
            "split": item.split,
            "group": item.group,
            "n_images": item.n_images,
            "answer": item.answer,
            "prediction": prediction,
            "raw_output": raw,
            "correct": prediction is not None and prediction == item.answer,
            "status": status,
            "reason": f"{error.reason}: {error.detail}" if error else None,
            "n_prompt_tokens": n_tokens,
            "extra": json.dumps(extra, default=str),
        }

    def run(self, items: Sequence[EvalItem]) -> list[dict]:
        """One prediction row per item, in the order given."""
        order = sorted(range(len(items)), key=lambda i: (items[i].video or "", items[i].n_images, i))
        rows: dict[int, dict] = {}
        pending: list[tuple[int, Prepared]] = []
        benchmark = items[0].benchmark if items else "eval"
        # the evaluation asset's summary line says the total time and rate
        progress = Progress(f"{benchmark} on {self.model_id}", len(items), self.log, unit="items", closing_line=False)

        def flush() -> None:
            if not pending:
                return
            try:
                if self.cfg.answer_mode in SCORED_MODES:
                    scores, counts = self.score([p for _, p in pending])
                    for (i, p), lp, n in zip(pending, scores, counts):
                        rows[i] = self._row(p.item, "", int(n), plan=p.video_plan, logprobs=lp)
                else:
                    texts, counts = self.generate([p for _, p in pending])
                    for (i, p), raw, n in zip(pending, texts, counts):
                        rows[i] = self._row(p.item, raw, int(n), plan=p.video_plan)
            except Exception as exc:  # retry alone to find the item that fails
                if len(pending) == 1:
                    i, p = pending[0]
                    err = exc if isinstance(exc, RejectRow) else RejectRow("inference_failed", f"{type(exc).__name__}: {exc}"[:500])
                    rows[i] = self._row(p.item, "", None, err)
                else:
                    for one in list(pending):
                        pending[:] = [one]
                        flush()
            progress.update(len(pending))
            pending.clear()

        for i in order:
            try:
                pending.append((i, self.prepare(items[i])))
            except RejectRow as exc:
                rows[i] = self._row(items[i], "", None, exc)
            if len(pending) >= self.cfg.batch_size:
                flush()
        flush()
        progress.close()
        return [rows[i] for i in range(len(items))]
