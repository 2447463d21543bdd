"""chatml/<source> assets: conversations in the contract of DESIGN.md section 4, with checks."""


from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.chatml.normalize import accounting, records_in, write_chatml
from assets.contract.atomic import write_json
from assets.contract.chat_template import render_chatml
from assets.contract.cleaning import special_tokens_left
from assets.contract.conversation import CONVERSATION_SCHEMA
from assets.contract.layout import DataLayout
from assets.contract.markdown import counts_table, markdown_table
from assets.contract.quality import count_lost, mass_rejections
from assets.defs.keys import CHATML_GROUP, chatml_key, raw_key
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataStore, QualityPolicy
from assets.sources.registry import SOURCES, SourceSpec

# Bump when the normalisation's output changes: the data version is hash(code version, raw data
# version), so an unchanged source rerun keeps it and wakes nothing downstream.
CHATML_CODE_VERSION = "2"
# The guards whose verdicts the chatml asset writes last (DataLayout.chatml_status): the stages
# below read them before they trust a source's conversations.
GUARDS = ("no_sample_lost", "no_special_tokens", "no_mass_rejection")


def build_chatml_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    key = chatml_key(spec.name)

    @dg.asset(
        key=key,
        deps=[raw_key(spec.name)],
        group_name=CHATML_GROUP,
        code_version=CHATML_CODE_VERSION,
        owners=[DATA_TEAM],
        metadata={"dagster/column_schema": column_schema(CONVERSATION_SCHEMA)},
        kinds={"parquet", "polars"},
        tags={"category": spec.category},
        description=(
            f"{spec.name} normalised to ChatML conversations (adapter "
            f"`{spec.adapter.__name__}`); rejected rows kept with their reason."
        ),
        check_specs=[
            dg.AssetCheckSpec("no_sample_lost", asset=key, blocking=True,
                              description="raw rows in = conversations out + rejected"),
            dg.AssetCheckSpec("no_special_tokens", asset=key, blocking=True,
                              description="no special token left in any text part"),
            dg.AssetCheckSpec("no_mass_rejection", asset=key, blocking=True,
                              description="no single reason takes more than quality.max_reason_share of the source's records"),
        ],
    )
    def _chatml(context: dg.AssetExecutionContext, store: DataStore, quality: QualityPolicy) -> dg.MaterializeResult:
        out_dir = store.stage_dir("chatml", spec.name)
        status_path = store.layout.chatml_status(spec.name)
        status_path.unlink(missing_ok=True)
        result = write_chatml(spec, store.stage_dir("raw", spec.name), out_dir, store.layout.image_verdicts, log=context.log.info)
        ok, detail = accounting(result)
        total = records_in(result)
        mass = mass_rejections(count_lost(r.to_row() for r in result.rejections), {spec.name: total}, quality.max_reason_share)
        leaked = {
            c.sample_id: tokens
            for c in result.conversations
            for m in c.messages
            for p in m["content"]
            if p["type"] == "text" and (tokens := special_tokens_left(p["text"]))
        }
        reasons = result.reasons()
        guards = {"no_sample_lost": ok, "no_special_tokens": not leaked, "no_mass_rejection": not mass}
        write_json(status_path, {"conversations": len(result.conversations), "records": total, "guards": guards})
        for m in mass:
            context.log.error(f"{m.describe()}: over the {quality.max_reason_share:.0%} allowed (quality.max_reason_share)")
        context.log.info(
            f"{spec.name}: {result.rows_in} rows in, {len(result.conversations)} conversations, "
            f"{len(result.rejections)} rejected {reasons}"
        )
        preview = [
            {"sample_id": c.sample_id, "turns": len(c.messages), "chatml": render_chatml(c.messages)}
            for c in result.conversations[:3]
        ]
        rejected = [r.to_row() for r in result.rejections[:20]]
        table = result.conversation_table()
        summary = (
            f"**{spec.name}** ({spec.category}, `{spec.hub_id}`): {result.rows_in} raw rows -> "
            f"{len(result.conversations)} conversations + {len(result.rejections)} rejected. {detail}."
        )
        return dg.MaterializeResult(
            metadata={
                "rows_in": result.rows_in,
                "conversations": len(result.conversations),
                "rejected": len(result.rejections),
                "dagster/row_count": len(result.conversations),
                "dagster/column_schema": column_schema(CONVERSATION_SCHEMA),
                "images": int(sum(table.column("n_images").to_pylist())),
                "videos": int(sum(table.column("n_videos").to_pylist())),
                "text_chars": int(sum(table.column("n_chars").to_pylist())),
                "path": dg.MetadataValue.path(str(out_dir / "conversations.parquet")),
                "summary": dg.MetadataValue.md(summary),
                "rejects_by_reason": dg.MetadataValue.md(counts_table(reasons)),
                "rejected_rows": dg.MetadataValue.md(
                    markdown_table(rejected, ["sample_id", "reason", "detail", "source_rows"], width=90)
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview, width=300)),
            },
            check_results=[
                dg.AssetCheckResult(check_name="no_sample_lost", passed=ok, metadata={"detail": detail}),
                dg.AssetCheckResult(
                    check_name="no_special_tokens",
                    passed=not leaked,
                    metadata={"samples_with_special_tokens": len(leaked), "examples": str(list(leaked.items())[:3])},
                ),
                dg.AssetCheckResult(
                    check_name="no_mass_rejection",
                    passed=not mass,
                    metadata={
                        "max_reason_share": quality.max_reason_share,
                        "records": total,
                        "worst": mass[0].describe() if mass else "(none over the limit)",
                        "reason": mass[0].reason if mass else "",
                    },
                ),
            ],
        )

    return _chatml


def build_chatml_assets(specs: list[SourceSpec] | tuple[SourceSpec, ...]) -> list[dg.AssetsDefinition]:
    return [build_chatml_asset(spec) for spec in specs]


chatml_assets = build_chatml_assets(SOURCES)


@dataclass
class ChatmlInputs:
    """The ChatML sources a downstream stage reads, and the ones left out on purpose."""

    paths: dict[str, Path] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def excluded_md(self) -> str:
        return ", ".join(self.excluded) if self.excluded else "(none)"


def chatml_problem(folder: Path) -> str | None:
    """Why a source's ChatML output cannot be trusted (None: it can)."""
    import json

    layout = DataLayout(folder.parent.parent)
    path, status_path = layout.conversations(folder.name), layout.chatml_status(folder.name)
    if not path.is_file():
        return "not materialised"
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return f"no {status_path.name} (interrupted, failed, or written by older code): materialise it again"
    failed = [g for g, passed in status.get("guards", {}).items() if not passed]
    if failed:
        return f"its guard check(s) {', '.join(failed)} failed"
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # a torn or foreign file
        return f"conversations.parquet does not verify ({type(exc).__name__}: {exc})"
    if rows != status.get("conversations"):
        return f"conversations.parquet has {rows} rows, its status says {status.get('conversations')}"
    return None


def chatml_inputs(store: DataStore, names: list[str], quality: QualityPolicy, stage: str) -> ChatmlInputs:
    """Every named source's verified conversations, or a ``dg.Failure`` naming each source that
    is missing or failed and not in ``quality.exclude_sources`` (an exclusion is reported)."""
    out, problems = ChatmlInputs(), []
    for name in names:
        if name in quality.exclude_sources:
            out.excluded.append(name)
            continue
        folder = store.layout.chatml(name)
        problem = chatml_problem(folder)
        if problem:
            problems.append(f"chatml/{name}: {problem}")
        else:
            out.paths[name] = folder / "conversations.parquet"
    if problems:
        raise dg.Failure(
            description=f"{stage} needs every upstream ChatML source:\n- " + "\n- ".join(problems)
            + "\nMaterialise them, or leave them out explicitly with quality.exclude_sources "
            "(GIRAFFE_EXCLUDE_SOURCES=name,...).",
            allow_retries=False,
        )
    return out
