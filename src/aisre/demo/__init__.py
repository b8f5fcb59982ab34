"""Simulated AI service and fault scenarios, driven through the real OpenTelemetry SDK.

Entry point: ``aisre.demo.runner.run``. Modules: ``provider`` (fake OpenAI-compatible
server), ``service`` (the support-bot's journeys), ``scenarios`` (fault knobs as data),
``telemetry`` (SDK, OTLP exporter and GenAI instrumentation wiring), ``runner`` (load).
"""
