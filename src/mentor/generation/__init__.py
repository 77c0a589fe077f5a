"""Generation: the one multi-turn tool loop, the HF and OpenAI-compatible generators, and the
one way to launch a local server. The teacher, the evaluator and the pipeline import it."""

from mentor.generation.factory import make_generator
from mentor.generation.hf import HFGenerator
from mentor.generation.loop import (
    Generation,
    Generator,
    Rollout,
    Sampling,
    parse_assistant,
    pending_calls,
    rollout,
    run_tool_calls,
)
from mentor.generation.openai_compat import EndpointError, OpenAIChat, OpenAIConfig, OpenAIGenerator, run_conversations
from mentor.generation.server import SERVER_COMMANDS, ServerProcess, free_port, serve_model, server_command, transformers_serve

__all__ = [
    "SERVER_COMMANDS",
    "EndpointError",
    "Generation",
    "Generator",
    "HFGenerator",
    "OpenAIChat",
    "OpenAIConfig",
    "OpenAIGenerator",
    "Rollout",
    "Sampling",
    "ServerProcess",
    "free_port",
    "make_generator",
    "parse_assistant",
    "pending_calls",
    "rollout",
    "run_conversations",
    "run_tool_calls",
    "serve_model",
    "server_command",
    "transformers_serve",
]
