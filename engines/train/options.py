"""The options of `cosplay train`: one typed model that everything else is derived from.

`TrainOptions` holds each option once: its type, default, limits and choices
(pydantic), its help text (the field's description) and where it appears on the
command line (`Cli` in its annotation: the argparse group, other spellings,
whether it may change when a run is resumed). From it come the argparse
arguments (`add_arguments`), validation with one-sentence errors naming the
flag the user typed (`TrainOptions.build`), the `params` written to
`cosplay_run.json` / `cosplay.json` (`model_dump`) and the `--dry-run` listing
(`describe`). A new training option is one new field here.

No torch or transformers here: the CLI builds its parser from this module.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from engines.i18n import N_, _, language
from engines.train import TrainingError
from engines.validation import describe


@dataclass(frozen=True)
class Cli:
    """Where an option appears on the command line.

    `flags`: its spellings (default `--name-with-dashes`); a bool whose flag starts
    with `--no-` is stored False when given (its description says what the flag
    does). `soft`: it may differ when an
    interrupted run is resumed (everything else must match the run file).
    """

    group: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None
    soft: bool = False


DATA, OPT, LORA, RUN = N_("data"), N_("optimisation"), N_("LoRA"), N_("run")  # argparse groups
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]
Format = Literal["auto", "cosplay", "alpaca", "sharegpt", "messages", "vicuna", "text"]


class TrainOptions(BaseModel):
    """Every option of `cosplay train` (and keyword of `engines.train.trainer.train`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- what to train on and where to write (required) ---
    base: Annotated[str, Cli("")] = Field(
        description=N_("the HF base model: a local directory or a repo id")
    )
    data: Annotated[str, Cli("", soft=True)] = Field(
        description=N_("dataset: .json / .jsonl records or a .txt file")
    )
    out: Annotated[str, Cli("", soft=True)] = Field(
        description=N_("output directory for the adapter, checkpoints and log")
    )
    # --- data ---
    data_format: Annotated[Format, Cli(DATA, flags=("--format",))] = Field(
        "auto", description=N_("dataset format (auto: detected from the records)")
    )
    skip_bad: Annotated[bool, Cli(DATA)] = Field(
        False, description=N_("skip and count malformed records instead of stopping")
    )
    template: Annotated[str, Cli(DATA)] = Field(
        "auto",
        min_length=1,
        description=N_(
            "chat template: auto (cosplay data → cosplay, else the model's own), "
            "model, or a named one"
        ),
    )
    cutoff_len: Annotated[int, Cli(DATA)] = Field(
        512, ge=1, description=N_("max tokens per sample")
    )
    text_overlap: Annotated[int, Cli(DATA)] = Field(
        64, ge=0, description=N_("token overlap between chunks of raw text")
    )
    val_size: Annotated[float, Cli(DATA)] = Field(
        0.0,
        ge=0,
        description=N_("held-out samples for eval loss: a fraction (0.1) or a count (50)"),
    )
    speaker: Annotated[str | None, Cli(DATA)] = Field(
        None,
        description=N_("the character this adapter speaks as (default: the most frequent one)"),
    )
    # --- optimisation ---
    epochs: Annotated[float, Cli(OPT)] = Field(3.0, ge=0, description=N_("passes over the data"))
    max_steps: Annotated[int, Cli(OPT)] = Field(
        0, ge=0, description=N_("stop after this many optimizer steps (overrides --epochs)")
    )
    learning_rate: Annotated[float, Cli(OPT, flags=("--learning-rate", "--lr"))] = Field(
        2e-4, gt=0, lt=1, description=N_("peak learning rate")
    )
    scheduler: Annotated[Scheduler, Cli(OPT)] = Field(
        "cosine", description=N_("learning-rate schedule")
    )
    warmup: Annotated[float, Cli(OPT)] = Field(
        0.03, ge=0, description=N_("warmup: a fraction of the steps (<1) or a step count")
    )
    batch_size: Annotated[int, Cli(OPT)] = Field(
        4, ge=1, description=N_("samples per device per step")
    )
    grad_accum: Annotated[int, Cli(OPT)] = Field(
        1, ge=1, description=N_("gradient accumulation steps")
    )
    seed: Annotated[int, Cli(OPT)] = Field(42, ge=0, description=N_("random seed"))
    # --- LoRA ---
    lora_r: Annotated[int, Cli(LORA)] = Field(8, ge=1, description=N_("rank"))
    lora_alpha: Annotated[int, Cli(LORA)] = Field(16, ge=1, description=N_("alpha"))
    lora_dropout: Annotated[float, Cli(LORA)] = Field(0.05, ge=0, lt=1, description=N_("dropout"))
    target_modules: Annotated[str | list[str], Cli(LORA)] = Field(
        "all-linear", description=N_("comma-separated module names, or all-linear")
    )
    use_rslora: Annotated[bool, Cli(LORA, flags=("--rslora",))] = Field(
        False, description=N_("rank-stabilised scaling alpha/sqrt(r)")
    )
    # --- run ---
    eval_steps: Annotated[int, Cli(RUN, soft=True)] = Field(
        50, ge=1, description=N_("evaluate every N steps (with --val-size)")
    )
    save_steps: Annotated[int, Cli(RUN, soft=True)] = Field(
        100, ge=1, description=N_("checkpoint every N steps")
    )
    save_total_limit: Annotated[int, Cli(RUN, soft=True)] = Field(
        3, ge=1, description=N_("keep at most N checkpoints")
    )
    logging_steps: Annotated[int, Cli(RUN, soft=True)] = Field(
        1, ge=1, description=N_("log the loss every N steps")
    )
    quantize: Annotated[Literal["auto", "4bit", "8bit", "none"], Cli(RUN)] = Field(
        "auto", description=N_("base weights: auto = 4-bit QLoRA on CUDA, full precision elsewhere")
    )
    gradient_checkpointing: Annotated[bool | None, Cli(RUN)] = Field(
        None, description=N_("trade compute for memory (default: on with a GPU)")
    )
    group_by_length: Annotated[bool, Cli(RUN)] = Field(
        True, description=N_("batch samples of similar length together: less padding, faster")
    )
    trust_remote_code: Annotated[bool, Cli(RUN)] = Field(
        False, description=N_("allow the model's own Python code")
    )
    resume: Annotated[bool | None, Cli(RUN, soft=True)] = Field(
        None,
        description=N_(
            "continue from the last checkpoint in --out (default: an unfinished run "
            "continues anyway; --no-resume refuses to)"
        ),
    )
    dry_run: Annotated[bool, Cli(RUN, soft=True)] = Field(
        False,
        description=N_(
            "show the detected format, counts, token lengths, options and rendered "
            "samples; train nothing"
        ),
    )
    dry_run_samples: Annotated[int, Cli(RUN, soft=True)] = Field(
        3, ge=0, description=N_("samples rendered by --dry-run")
    )
    gguf: Annotated[
        bool | str | None, Cli(RUN, metavar="BASE.gguf", nargs="?", const=True, soft=True)
    ] = Field(
        None,
        description=N_(
            "also export the adapter as a GGUF LoRA for the CPU engine "
            "(checked against BASE.gguf if given)"
        ),
    )
    progress: Annotated[bool, Cli(RUN, flags=("--no-progress",), soft=True)] = Field(
        True, description=N_("no progress bar on the terminal")
    )

    @field_validator("base", "data", "out", "gguf", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("base", "data", "out")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(_("must not be empty"))
        return value

    @field_validator("target_modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, tuple):
            value = list(value)
        names = value.split(",") if isinstance(value, str) else value
        if isinstance(names, list) and not any(str(n).strip() for n in names):
            raise ValueError(_("must name at least one module"))
        return value

    @model_validator(mode="after")
    def _together(self) -> TrainOptions:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError(_("--epochs or --max-steps must be positive"))
        return self

    # --- building one -----------------------------------------------------------------------

    @classmethod
    def build(cls, typed: dict[str, str] | None = None, /, **values: Any) -> TrainOptions:
        """Validated options; a problem is one TrainingError sentence naming the flag
        (as the user typed it when `typed` maps field names to the spelling used)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise TrainingError(describe_errors(exc, typed or {})) from None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> TrainOptions:
        """From `add_arguments`' parse: options not given keep the model's defaults."""
        values = {name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)}
        return cls.build(getattr(args, TYPED, {}), **values)

    # --- showing one ------------------------------------------------------------------------

    def describe(self) -> list[str]:
        """The options by group as command-line flags (the --dry-run listing)."""
        groups: dict[str, list[str]] = {}
        for name in type(self).model_fields:
            cli = cli_of(name)
            if cli.group in ("", RUN) and name not in ("quantize", "gradient_checkpointing"):
                continue  # paths are shown elsewhere; run controls change nothing trained
            value = getattr(self, name)
            flag = flags_of(name)[0]
            if isinstance(value, bool):
                shown = flag if value else f"--no-{flag[2:]}" if _negatable(name) else ""
            elif value is None:
                shown = ""
            else:
                value = ",".join(value) if isinstance(value, list) else value
                shown = f"{flag} {_show(value)}"
            if shown:
                groups.setdefault(cli.group, []).append(shown)
        return [
            _("options ({group}): {flags}", group=_(group), flags=" ".join(items))
            for group, items in groups.items()
        ]


TYPED = "_train_flags_typed"  # Namespace attribute: field name -> the flag spelling used


def cli_of(name: str) -> Cli:
    info = TrainOptions.model_fields[name]
    return next(m for m in info.metadata if isinstance(m, Cli))


def flags_of(name: str) -> tuple[str, ...]:
    return cli_of(name).flags or ("--" + name.replace("_", "-"),)


def soft_options() -> set[str]:
    """Options that may change between an interrupted run and its resumption."""
    return {name for name in TrainOptions.model_fields if cli_of(name).soft}


def _kinds(name: str) -> tuple[Any, list[Any]]:
    annotation = TrainOptions.model_fields[name].annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return annotation, [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation, [annotation]


def _negatable(name: str) -> bool:
    """--x / --no-x: a bool that is on by default or has a third state (None: decide later)."""
    annotation, kinds = _kinds(name)
    if kinds != [bool] or flags_of(name)[0].startswith("--no-"):
        return False
    default = TrainOptions.model_fields[name].default
    return default is None or default is True


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- argparse ------------------------------------------------------------------------------------


def _recording(base: type[argparse.Action]) -> type[argparse.Action]:
    class Recording(base):  # remembers which spelling was typed, for error messages
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            typed = dict(getattr(namespace, TYPED, {}))
            typed[self.dest] = option_string
            setattr(namespace, TYPED, typed)

    return Recording


_STORE = _recording(argparse._StoreAction)
_STORE_TRUE = _recording(argparse._StoreTrueAction)
_STORE_FALSE = _recording(argparse._StoreFalseAction)
_BOOL_PAIR = _recording(argparse.BooleanOptionalAction)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argparse argument per field, in its group; defaults stay in the model."""
    groups: dict[str, Any] = {"": parser}
    for name, info in TrainOptions.model_fields.items():
        cli = cli_of(name)
        if cli.group not in groups:
            groups[cli.group] = parser.add_argument_group(_(cli.group))
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        required = info.default is PydanticUndefined
        help_text = _(info.description) if info.description else ""
        annotation, kinds = _kinds(name)
        if kinds == [bool]:
            if _negatable(name):
                kwargs["action"] = _BOOL_PAIR
                help_text += _(" (default: on)") if info.default else ""
            else:
                kwargs["action"] = _STORE_FALSE if info.default else _STORE_TRUE
        else:
            kwargs["action"] = _STORE
            if typing.get_origin(kinds[0]) is Literal:
                kwargs["choices"] = list(typing.get_args(kinds[0]))
            else:
                kwargs["type"] = next(k for k in (int, float, str) if k in kinds)
            if cli.nargs:
                kwargs["nargs"], kwargs["const"] = cli.nargs, cli.const
            if cli.metavar:
                kwargs["metavar"] = cli.metavar
            if not required and info.default not in (None, ""):
                help_text += _(" (default {value})", value=_show(info.default))
        if required:
            kwargs["required"] = True
        kwargs["help"] = help_text.replace("%", "%%")
        groups[cli.group].add_argument(*flags_of(name), **kwargs)


# --- errors --------------------------------------------------------------------------------------


def describe_errors(exc: ValidationError, typed: dict[str, str]) -> str:
    """Pydantic's errors as one sentence: `--warmup must be ≥ 0 (got -5).`"""
    parts = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        name = str(loc[0]) if loc else ""
        if error["type"] == "extra_forbidden":
            parts.append(_("there is no training option '{name}'", name=name))
            continue
        flag = (typed.get(name) or flags_of(name)[0]) if name in TrainOptions.model_fields else ""
        problem = describe(error)
        # A model-level check names its flags itself (`--epochs or --max-steps must be …`).
        parts.append(problem if problem.startswith("--") or not flag else f"{flag} {problem}")
    chinese = language() == "zh"
    problems = ("；" if chinese else "; ").join(dict.fromkeys(parts))
    return problems[:1].upper() + problems[1:] + ("。" if chinese else ".")


__all__ = ["Cli", "TrainOptions", "add_arguments", "describe_errors", "soft_options"]
