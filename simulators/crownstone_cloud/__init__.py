"""A faithful local Crownstone cloud (v1 REST and the SSE server) for tests, benches and demos."""

from .scenario import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    Ability,
    AbilityProperty,
    Location,
    Presence,
    Scenario,
    Sphere,
    Stone,
    SwitchState,
    User,
    demo_home,
    generated_home,
)
from .simulator import CloudSimulator

__all__ = [
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "Ability",
    "AbilityProperty",
    "CloudSimulator",
    "Location",
    "Presence",
    "Scenario",
    "Sphere",
    "Stone",
    "SwitchState",
    "User",
    "demo_home",
    "generated_home",
]
