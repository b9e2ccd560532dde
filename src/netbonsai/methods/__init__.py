"""Methods: every family that finds small networks, behind one protocol (:class:`Method`:
settings + ``run(task, ctx) -> MethodResult``) and one registry (name -> method) that
``compare`` and the command line use. See docs/ARCHITECTURE.md for how to add one."""

from .base import Candidate, Method, MethodResult, candidate, finite_front, measure
from .registry import METHODS, get_method, method_names, parse_methods, register

__all__ = ["Candidate", "Method", "MethodResult", "candidate", "finite_front", "measure", "METHODS", "get_method",
           "method_names", "parse_methods", "register"]
