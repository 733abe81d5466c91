"""The `harken` command line. Every command is a thin layer over Service and the writers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from harken import __version__
from harken.config import Settings
from harken.engines.base import TranscribeOptions
from harken.errors import AudioError, HarkenError
from harken.files import write_atomic
from harken.cli_help import PlainHelpTyper
from harken.diarization import DiarizeOptions, rttm
from harken.formats import get_writer, needs_speakers
from harken.inputs import expand, unique_stem
from harken.progress import AudioProgress
from harken.results import TranscriptWarning
from harken.service import Service

app = PlainHelpTyper(
    help="Offline audio understanding with local models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="harken.toml to read (default: $HARKEN_CONFIG or ./harken.toml)")]


def _one_shot(config: Optional[Path], inputs: Optional[list[str]] = None) -> Settings:
    """Settings for a command that runs once on one input (`inputs`: a single file, or stdin): no
    warm-up unless the settings ask for one. The warm-up (and the whole-cores copy it makes) serves
    a server's first request and pays for itself over a few clips in a row; for one input it only
    adds to the run."""
    settings = Settings.load(config)
    single = inputs is None or (len(inputs) == 1 and (inputs[0] == "-" or Path(inputs[0]).is_file()))
    if not single or "warmup" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"warmup": False})


def _version(value: bool) -> None:
    if value:
        print(f"harken {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    pass


@app.command()
def transcribe(
    files: Annotated[list[str], typer.Argument(
        metavar="FILE", show_default=False,
        help="Audio or video files (any container FFmpeg reads), folders (searched recursively), "
             "- for stdin, or http(s):// and file:// URLs.",
    )],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalogue name, alias or model directory.")] = None,
    language: Annotated[Optional[str], typer.Option("--language", "-l", help="Spoken language code; detected when omitted.")] = None,
    task: Annotated[str, typer.Option(help="transcribe or translate (to English).")] = "transcribe",
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="txt, json, verbose_json, srt, vtt or diarized_json.")] = "txt",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="DIR",
        help="Write DIR/STEM.EXT per input (txt, json, verbose.json, srt, vtt, diarized.json); a repeated stem gets -2, -3.",
    )] = None,
    diarize: Annotated[bool, typer.Option("--diarize", help="Tell the speakers apart: each segment gets its speaker.")] = False,
    num_speakers: Annotated[Optional[int], typer.Option(help="With --diarize: exactly this many speakers.")] = None,
    min_speakers: Annotated[Optional[int], typer.Option(help="With --diarize: at least this many.")] = None,
    max_speakers: Annotated[Optional[int], typer.Option(help="With --diarize: at most this many.")] = None,
    speaker: Annotated[Optional[list[str]], typer.Option(
        "--speaker", metavar="NAME=FILE", help="A known speaker and a 2-10 s clip of their voice (repeat, at most 4); implies --diarize.",
    )] = None,
    word_timestamps: Annotated[bool, typer.Option("--word-timestamps", help="Add word-level timestamps.")] = False,
    beam_size: Annotated[int, typer.Option(help="Beam width.")] = 5,
    temperature: Annotated[float, typer.Option(help="0 decodes by beam search (with fallback); above 0 samples.")] = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="Seed for sampling. Whisper's CTranslate2 seeds each worker once, when it first samples: the first run in a fresh process repeats, later ones in it do not (a cached result does).")] = None,
    vad: Annotated[bool, typer.Option("--vad/--no-vad", help="Drop non-speech before decoding (sequential decoding).")] = False,
    long_form: Annotated[str, typer.Option(help="segmented (auto: cut at pauses, pieces decoded in parallel) or sequential (faster-whisper's own) decoding.")] = "auto",
    prompt: Annotated[Optional[str], typer.Option(help="Initial prompt (spellings, context).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the result cache.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Transcribe (or translate) audio files."""
    writer = get_writer(fmt)
    speaking = _speaking(diarize or needs_speakers(fmt), num_speakers, min_speakers, max_speakers, speaker)
    options = TranscribeOptions.build(
        language=language, task=task, beam_size=beam_size, temperature=temperature, seed=seed,
        word_timestamps=word_timestamps,
        vad_filter=vad, long_form=long_form, initial_prompt=prompt,
    )
    if output is not None and output.exists() and not output.is_dir():
        raise HarkenError(f"--output {output} exists and is not a directory", param="output")
    service = Service(_one_shot(config, files))
    service.registry.resolve(model)  # an unknown model stops here, before any file is read
    with AudioProgress(err) as progress:

        def run(item, stem: str):
            try:
                transcript = service.transcribe(
                    item.source, model=model, use_cache=not no_cache, on_progress=progress.track(item.label),
                    diarize=speaking.options or False, known_speakers=speaking.known, **asdict(options),
                )
            finally:
                progress.finish()
            return transcript.warnings, writer.render(transcript)

        _each_input(files, output, writer.extension, run)


@dataclass(frozen=True)
class _Speaking:
    options: DiarizeOptions | None  # None: no diarization asked for
    known: dict[str, str]


def _speaking(
    wanted: bool, num: int | None, low: int | None, high: int | None, speakers: list[str] | None,
) -> _Speaking:
    """The diarization a command asked for; a speaker-count option or --speaker alone asks for it."""
    known: dict[str, str] = {}
    for item in speakers or ():
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise HarkenError(f"--speaker takes NAME=FILE, not {item!r}", param="speaker")
        known[name.strip()] = path
    if not (wanted or known or num or low or high):
        return _Speaking(None, {})
    return _Speaking(DiarizeOptions.build(num_speakers=num, min_speakers=low, max_speakers=high), known)


@app.command("diarize")
def diarize_(
    files: Annotated[list[str], typer.Argument(metavar="FILE", show_default=False, help="Audio or video files, folders, - or URLs.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The diarizer (default: ge2e-diarizer).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="rttm or json.")] = "rttm",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="DIR", help="Write DIR/STEM.rttm (or .json) per input.")] = None,
    num_speakers: Annotated[Optional[int], typer.Option(help="Exactly this many speakers.")] = None,
    min_speakers: Annotated[Optional[int], typer.Option(help="At least this many speakers.")] = None,
    max_speakers: Annotated[Optional[int], typer.Option(help="At most this many speakers.")] = None,
    speaker: Annotated[Optional[list[str]], typer.Option(
        "--speaker", metavar="NAME=FILE", help="A known speaker and a 2-10 s clip of their voice (repeat, at most 4).",
    )] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the result cache.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Who spoke when: speaker turns as RTTM (one SPEAKER line per turn) or JSON."""
    if fmt not in ("rttm", "json"):
        raise HarkenError(f"unknown format {fmt!r} (choose from rttm, json)", param="format")
    if output is not None and output.exists() and not output.is_dir():
        raise HarkenError(f"--output {output} exists and is not a directory", param="output")
    speaking = _speaking(True, num_speakers, min_speakers, max_speakers, speaker)
    service = Service(_one_shot(config, files))
    service.registry.resolve(model or service.settings.default_diarizer, task="diarize")

    def run(item, stem: str):
        result = service.diarize(item.source, model=model, use_cache=not no_cache, known_speakers=speaking.known,
                                 **asdict(speaking.options))
        text = rttm(result, stem) if fmt == "rttm" else json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
        return result.warnings, text

    _each_input(files, output, fmt, run)


def _each_input(
    files: list[str], output: Path | None, extension: str,
    run: Callable[[Any, str], tuple[Sequence[TranscriptWarning], str]],
) -> None:
    """Every input of every argument through `run(item, stem)`, its warnings on stderr and its text
    on stdout or in OUTPUT/STEM.EXTENSION; a bad input is one line on stderr and a non-zero exit
    once the others have run."""
    failures = 0
    stems: set[str] = set()
    for argument in files:
        try:
            inputs = expand(argument)
        except AudioError as exc:
            failures += 1
            err.print(f"harken: error: {exc.message}", markup=False)
            continue
        for item in inputs:
            stem = unique_stem(item.stem, stems)
            try:
                warnings, text = run(item, stem)
            except AudioError as exc:
                failures += 1
                err.print(f"harken: error: {exc.message}", markup=False)
                continue
            stems.add(stem)
            for warning in warnings:
                err.print(f"harken: warning: {item.label}: {warning.message}", markup=False)
            if output is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                write_atomic(output / f"{stem}.{extension}", text)
    if failures:
        raise typer.Exit(1)


@app.command()
def listen(
    source: Annotated[str, typer.Argument(
        metavar="FILE", show_default=False,
        help="An audio file, or - for raw 16-bit PCM or WAV on stdin (arecord -f S16_LE -r 16000 | harken listen -).",
    )],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalogue name, alias or model directory.")] = None,
    language: Annotated[Optional[str], typer.Option("--language", "-l", help="Spoken language code; detected when omitted.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="text (partials rewritten in place on a terminal) or jsonl (every event).")] = "text",
    realtime: Annotated[bool, typer.Option("--realtime", help="Send a file at real-time pace, as a live source would.")] = False,
    rate: Annotated[int, typer.Option(help="Sample rate of raw PCM on stdin (a WAV header overrides it).")] = 16000,
    silence_ms: Annotated[int, typer.Option(help="Silence that ends an utterance, in ms.")] = 500,
    threshold: Annotated[float, typer.Option(help="Speech probability that starts an utterance (0-1).")] = 0.5,
    prompt: Annotated[Optional[str], typer.Option(help="Initial prompt (spellings, context).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Transcribe as the audio arrives: utterances cut at pauses, partial text while speaking."""
    from harken.listen import run
    from harken.live import LiveOptions, TurnDetection

    options = LiveOptions(model=model, language=language, prompt=prompt,
                          turn_detection=TurnDetection(threshold=threshold, silence_duration_ms=silence_ms))
    service = Service(Settings.load(config))
    if run(service, source, options, fmt=fmt, realtime=realtime, rate=rate):
        raise typer.Exit(1)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List the models harken knows: name, aliases, engine, installed, loaded, size."""
    infos = Service(Settings.load(config)).registry.describe()
    if as_json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    table = Table("name", "aliases", "engine", "installed", "loaded", "size")
    for i in infos:
        size = f"{i.size_bytes / 1e6:.0f} MB" if i.size_bytes else "-"
        table.add_row(i.name, ", ".join(i.aliases), i.engine, "yes" if i.installed else "no", "yes" if i.loaded else "no", size)
    Console().print(table)


AudioFileArg = Annotated[str, typer.Argument(help="An audio file.", show_default=False)]
ChatModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Catalogue name, alias or checkpoint directory.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Most tokens to generate.")]
TextFormatOpt = Annotated[str, typer.Option("--format", "-f", help="text or json.")]


@app.command()
def ask(
    file: AudioFileArg,
    question: Annotated[str, typer.Argument(help="What to ask about it.", show_default=False)],
    model: ChatModelOpt = None,
    max_tokens: MaxTokensOpt = None,
    fmt: TextFormatOpt = "text",
    config: ConfigOpt = None,
) -> None:
    """Ask an audio-language model a question about a clip."""
    _check_text_format(fmt)
    result = Service(_one_shot(config)).ask(file, question, model=model, max_new_tokens=max_tokens)
    _print_chat(result, fmt)


@app.command()
def caption(
    file: AudioFileArg,
    model: ChatModelOpt = None,
    max_tokens: MaxTokensOpt = None,
    fmt: TextFormatOpt = "text",
    config: ConfigOpt = None,
) -> None:
    """Describe a clip with an audio-language model (a Captioner needs no prompt)."""
    _check_text_format(fmt)
    _print_chat(Service(_one_shot(config)).caption(file, model=model, max_new_tokens=max_tokens), fmt)


@app.command()
def analyze(
    file: AudioFileArg,
    schema: Annotated[str, typer.Option(help="A built-in schema (tone) or a JSON Schema file.")] = "tone",
    model: ChatModelOpt = None,
    max_tokens: MaxTokensOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json (the only format).")] = "json",
    config: ConfigOpt = None,
) -> None:
    """A JSON analysis of a clip that always validates against the schema."""
    if fmt != "json":
        raise HarkenError(f"analyze writes json, not {fmt!r}", param="format")
    result = Service(_one_shot(config)).analyze(file, schema, model=model, max_new_tokens=max_tokens)
    _print_chat(result, "json")


def _check_text_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        raise HarkenError(f"--format must be text or json, not {fmt!r}", param="format")


def _print_chat(result, fmt: str) -> None:
    if fmt == "text":
        print(result.text)
    else:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))


@app.command()
def speak(
    text: Annotated[str, typer.Argument(help="What to say, or - to read standard input.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Audio file to write.")],
    voice: Annotated[Optional[str], typer.Option(help="A voice from `harken voices` (default: the embedded one).")] = None,
    speed: Annotated[float, typer.Option(help="0.25 to 4.")] = 1.0,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="mp3, opus, aac, flac, wav or pcm; default from the extension.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Speak text offline into an audio file."""
    if text == "-":
        text = sys.stdin.read()
    name = fmt or output.suffix.lstrip(".").lower().replace("ogg", "opus") or "wav"
    speech = Service(_one_shot(config)).speak(text, voice=voice, speed=speed, format=name)
    write_atomic(output, speech.data)  # written only once synthesis succeeded
    err.print(f"{output}: {speech.duration:.1f} s of {speech.voice}, {speech.format}", markup=False)


@app.command()
def voices(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List the voices harken can speak with."""
    infos = [i for i in Service(Settings.load(config)).registry.describe() if i.engine == "piper"]
    if as_json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    table = Table("name", "aliases", "installed", "description")
    for i in infos:
        table.add_row(i.name, ", ".join(i.aliases), "yes" if i.installed else "no", i.description)
    Console().print(table)


@app.command("eval")
def eval_(
    data: Annotated[str, typer.Argument(
        help="A folder (audio/ + labels/, or audio with a same-stem .rttm and optional .uem beside each), "
             "a .jsonl manifest or a .csv.", show_default=False)],
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model to score; repeat to compare.")] = None,
    task: Annotated[str, typer.Option(help="asr, exact, lid, classify or diar (DER against RTTM).")] = "asr",
    normalizer: Annotated[str, typer.Option(help="english, basic or none (asr and exact).")] = "english",
    labels: Annotated[Optional[Path], typer.Option(help="Label folder, when DATA is just the audio folder.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Most tokens per answer.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the JSON report here.")] = None,
    html_path: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report with plots.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every clip again, so every clip is timed.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Score one or more models on labelled audio: WER/CER, exact match, accuracy, DER, latency.
    Clips answered from the result cache are marked cached and left out of latency and RTF."""
    from harken.evaluation import evaluate, load_dataset
    from harken.evaluation.report import write_html, write_json

    dataset = load_dataset(data, labels)
    service = Service(Settings.load(config))
    reports = []
    for name in model or [None]:
        with _progress(len(dataset.examples) + 1) as progress:
            job = progress.add_task(f"evaluating {name or 'default'}", total=len(dataset.examples)) if progress else None
            reports.append(evaluate(dataset, model=name, task=task, normalizer=normalizer, max_new_tokens=max_new_tokens,
                                    service=service, on_clip=(lambda _: progress.advance(job)) if progress else None,
                                    use_cache=not no_cache))
    for problem in dataset.problems:
        err.print(f"harken: warning: {problem}", markup=False)
    keys = [k for k in ("count", "failed", "cached", "wer", "cer", "der", "speaker_count_accuracy", "accuracy",
                        "macro_f1", "f1", "latency_p50_s", "rtf")
            if k in reports[0].summary]
    table = Table("model", *keys)
    for r in reports:
        table.add_row(r.model, *("-" if r.summary[k] is None else f"{r.summary[k]:.4f}" if isinstance(r.summary[k], float)
                                 else str(r.summary[k]) for k in keys))
    # Piped, Rich would squeeze the table into 80 columns and cut the model names short.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    if any(r.summary.get("cached") for r in reports):  # why latency is short of the count, or blank
        err.print("harken: note: cached clips are left out of latency and RTF; --no-cache times every clip", markup=False)
    if output is not None:
        write_json(reports, output)
    if html_path is not None:
        write_html(reports, html_path)


@app.command()
def batch(
    input_: Annotated[str, typer.Argument(metavar="INPUT", help="A folder (recursive), a glob, or a manifest (.jsonl/.csv/.txt).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder; also holds the job store and summary.jsonl.")],
    task: Annotated[str, typer.Option(help="transcribe, translate, caption, ask, analyze or diarize.")] = "transcribe",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalogue name, alias or model directory.")] = None,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", "-f", help="json, verbose_json, srt, vtt or txt (default json); for diarize rttm (the default) or json.",
    )] = None,
    workers: Annotated[int, typer.Option(help="Inputs in flight at once (the scheduler batches them).")] = 2,
    retries: Annotated[int, typer.Option(help="Attempts per failing input across runs.")] = 3,
    question: Annotated[Optional[str], typer.Option(help="The question, for --task ask.")] = None,
    schema: Annotated[str, typer.Option(help="Schema for --task analyze: tone or a JSON Schema file.")] = "tone",
    language: Annotated[Optional[str], typer.Option(help="Spoken language, for transcribe.")] = None,
    num_speakers: Annotated[Optional[int], typer.Option(help="For --task diarize: exactly this many speakers.")] = None,
    min_speakers: Annotated[Optional[int], typer.Option(help="For --task diarize: at least this many.")] = None,
    max_speakers: Annotated[Optional[int], typer.Option(help="For --task diarize: at most this many.")] = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (one model per actor).")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start or join a local one).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run a task over many files; rerun the same command to resume after a crash."""
    import signal
    import threading

    from harken.batch.inputs import expand_inputs
    from harken.batch.local import BatchSpec, default_format, run_batch

    options: dict = {}
    if task in ("transcribe", "translate") and language:
        options["language"] = language
    if task == "ask":
        options["question"] = question
    if task == "analyze":
        options["schema"] = schema
    if task == "diarize":  # only what was given: the job store compares options on resume
        counts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
        options.update({k: v for k, v in counts.items() if v is not None})
    spec = BatchSpec(task=task, model=model, format=fmt or default_format(task), options=options, workers=workers,
                     max_attempts=retries)
    inputs = expand_inputs(input_)
    for problem in inputs.problems:
        err.print(f"harken: warning: {problem}", markup=False)
    service = Service(Settings.load(config))
    if task == "diarize":  # an unknown name is told with the diarizers to choose from
        service.registry.resolve(model or service.settings.default_diarizer, task="diarize")
    else:
        service.registry.resolve(model)
    stop = threading.Event()

    def interrupted(signum, frame):  # finish what is running, leave the rest for the next run
        stop.set()
        err.print("harken: stopping after the files in progress (run the same command to resume)", markup=False)

    work = None
    if use_ray:
        from harken.batch.ray_backend import ray_work

        work = ray_work(spec, service.settings, address=ray_address)
    signal.signal(signal.SIGINT, interrupted)
    with _batch_progress() as bar:
        result = run_batch(service, inputs, output, spec, stop=stop, on_progress=bar, work=work)
    err.print(
        f"harken: {result.done} done, {result.skipped} already done, {result.failed} failed"
        f" ({result.failed_overall} failed in all), "
        f"{result.audio_s / 3600:.2f} h of audio; see {output / 'summary.jsonl'}",
        markup=False,
    )
    if stop.is_set():
        raise typer.Exit(130)
    if result.failed_overall:
        raise typer.Exit(1)


class _batch_progress:
    """Rich progress on a terminal (files, audio hours, ETA, RTF, failures); silent otherwise."""

    def __enter__(self):
        self.progress = None
        if sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"), console=err, transient=False,
            )
            self.progress.__enter__()
            self.job = None
        return self

    def __call__(self, p, item) -> None:
        if self.progress is None:
            return
        if self.job is None:
            self.job = self.progress.add_task("batch", total=p.total, completed=p.skipped, stats="")
        rtf = p.inference_s / p.audio_s if p.audio_s else 0.0
        stats = f"{p.audio_s / 3600:.2f} h audio, RTF {rtf:.3f}, {p.failed} failed"
        self.progress.update(self.job, completed=p.skipped + p.done + p.failed, stats=stats)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind (default 127.0.0.1; settings: server.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default 8000; settings: server.port).")] = None,
    wyoming_port: Annotated[Optional[int], typer.Option(
        help="Also serve Home Assistant's Wyoming protocol on this TCP port (settings: server.wyoming_port).")] = None,
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the OpenAI-compatible and native HTTP routes (docs at /docs)."""
    from harken.errors import MissingExtraError, needs_extra

    try:
        import uvicorn

        from harken.runtime.memory import limit_arenas
        from harken.server import create_app
        from harken.server.listen import check_can_listen
        from harken.server.observe import setup_json_logging
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] == "harken":
            raise  # harken's own module failing to import is a bug, not a missing extra
        raise MissingExtraError(needs_extra("harken serve", "server", exc.name)) from None
    settings = Settings.load(config)
    overrides = {k: v for k, v in (("host", host), ("port", port), ("wyoming_port", wyoming_port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=overrides)})
    check_can_listen(settings.server.host, settings.server.port)  # a busy port: one line now, not exit 3 later
    if settings.server.wyoming_port:
        check_can_listen(settings.server.host, settings.server.wyoming_port)
    setup_json_logging(log_level)
    limit_arenas()
    app_ = create_app(settings)
    # Our middleware writes the access log as JSON; uvicorn's own is turned off.
    uvicorn.run(app_, host=settings.server.host, port=settings.server.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=30)


def _progress(total: int):
    if total > 1 and sys.stderr.isatty():
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err, transient=True,
        )
    return _NoProgress()


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    """Entry point: one plain line and a non-zero exit for every error, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except HarkenError as exc:
        _fail(exc.message, 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except TyperException as exc:  # Typer's own usage errors: unknown option, missing argument
        _fail(exc.format_message() if hasattr(exc, "format_message") else str(exc), 2)
    except Exception as exc:  # a bug: still one line, with what a bug report needs
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err.print(f"harken: error: {message}", markup=False)
    sys.exit(code)
