"""OpenTelemetry tracing and logging set-up, done once per process by a service main.

The global tracer provider can only be set once per process, so `configure_tracing` installs
one SDK provider with a span processor we control (`_Tap`); exporters are attached to and
detached from that tap. Tests use `capture_spans()` (or `in_memory_tracer_provider()` for an
isolated provider) to look at the spans a call produced.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from archive.config import ConfigError, Settings

_OTLP_MODULE: Final = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _Tap(SpanProcessor):
    """Forwards spans to a changeable set of processors (the SDK cannot remove one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processors: tuple[SpanProcessor, ...] = ()

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


_tap = _Tap()
_provider: TracerProvider | None = None
_provider_lock = threading.Lock()
_exporters_installed: set[str] = set()


def configure_tracing(service_name: str = "archive", exporter: str = "none") -> TracerProvider:
    """Install the process-wide tracer provider (idempotent) and attach `exporter`:
    "none" (spans are created, trace context propagates, nothing is exported),
    "console" (stdout, for debugging) or "otlp" (needs opentelemetry-exporter-otlp)."""
    global _provider
    with _provider_lock:
        if _provider is None:
            existing = trace.get_tracer_provider()
            if isinstance(existing, TracerProvider):
                _provider = existing  # the SDK was set up already (only once is allowed): join
            else:
                _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
                trace.set_tracer_provider(_provider)
            _provider.add_span_processor(_tap)
        provider = _provider
        # Calling again (a second service in one process, a test) must not export twice.
        if exporter in _exporters_installed:
            return provider
        span_exporter = _exporter(exporter)
        if span_exporter is not None:
            _tap.add(BatchSpanProcessor(span_exporter))
        _exporters_installed.add(exporter)
    return provider


def configure_from_settings(settings: Settings) -> TracerProvider:
    configure_logging(settings.log_level)
    return configure_tracing(settings.service_name, settings.traces_exporter)


def _exporter(kind: str) -> SpanExporter | None:
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "otlp":
        try:
            module = importlib.import_module(_OTLP_MODULE)
        except ImportError:
            raise ConfigError(
                "ARCHIVE_TRACES_EXPORTER",
                "otlp needs the opentelemetry-exporter-otlp package; install it or choose "
                "console/none",
            ) from None
        # Endpoint and headers come from the standard OTEL_EXPORTER_OTLP_* variables.
        exporter: SpanExporter = module.OTLPSpanExporter()
        return exporter
    raise ConfigError("ARCHIVE_TRACES_EXPORTER", f"{kind!r} is not one of none, console, otlp")


def install_in_memory_exporter() -> InMemorySpanExporter:
    """Attach an in-memory exporter to the global provider (installing it if needed); spans
    are handed over synchronously, so they are there as soon as the call returns."""
    configure_tracing()
    exporter = InMemorySpanExporter()
    _tap.add(_TaggedProcessor(exporter))
    return exporter


def uninstall_exporter(exporter: InMemorySpanExporter) -> None:
    for processor in _tap._processors:
        if isinstance(processor, _TaggedProcessor) and processor.exporter is exporter:
            _tap.remove(processor)


@contextmanager
def capture_spans() -> Iterator[InMemorySpanExporter]:
    """`with capture_spans() as spans: ...; spans.get_finished_spans()` on the global provider."""
    exporter = install_in_memory_exporter()
    try:
        yield exporter
    finally:
        uninstall_exporter(exporter)


def in_memory_tracer_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """An isolated provider (not global) and its exporter, for code that accepts a provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class _TaggedProcessor(SimpleSpanProcessor):
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        super().__init__(exporter)
        self.exporter = exporter


def configure_logging(level: str = "INFO") -> None:
    """Plain line logs on stderr at `level`; libraries that chatter are held at WARNING."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger().setLevel(level.upper())
    for noisy in ("grpc._cython", "nats.aio.client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
