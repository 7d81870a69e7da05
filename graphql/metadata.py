"""``metadata``: what the API says about itself, so a frontend can build forms and boards.

Labels follow ``Accept-Language`` (en, zh); fields hidden from the caller are absent.
"""

from __future__ import annotations

from typing import Optional

import strawberry

from guanxi.engine.workflow_defs import to_mermaid

from .context import Context
from .types import camel


@strawberry.type
class ChoiceMeta:
    value: str
    label: str


@strawberry.type
class FieldMeta:
    name: str
    type: str
    required: bool
    label: str
    choices: list[ChoiceMeta]
    target: Optional[str]  # noqa: UP045
    readonly: bool


@strawberry.type
class EntityMeta:
    name: str
    plural: str
    label: str
    fields: list[FieldMeta]


@strawberry.type
class StateMeta:
    name: str
    label: str
    final: bool
    outcome: Optional[str]  # noqa: UP045
    probability: Optional[float]  # noqa: UP045
    rotten_after_days: Optional[int]  # noqa: UP045


@strawberry.type
class TransitionMeta:
    trigger: str
    label: str
    sources: list[str]
    dest: str
    roles: list[str]


@strawberry.type
class WorkflowMeta:
    name: str
    label: str
    entity: str
    field: str
    initial: str
    states: list[StateMeta]
    transitions: list[TransitionMeta]
    mermaid: str


@strawberry.type
class RoleMeta:
    name: str
    label: str


@strawberry.type
class Metadata:
    entities: list[EntityMeta]
    workflows: list[WorkflowMeta]
    roles: list[RoleMeta]


def build_metadata(info: strawberry.Info) -> Metadata:
    """Entities with their visible fields, workflows and roles, labelled for the caller."""
    ctx: Context = info.context
    actor = ctx.require_actor()
    engine = ctx.engine
    entities = []
    for spec in engine.registry:
        fields = [
            FieldMeta(
                name=camel(f.name),
                type=f.type,
                required=f.required,
                label=ctx.label(f),
                choices=[ChoiceMeta(value=c.value, label=ctx.label(c)) for c in f.choices],
                target=f.to,
                readonly=f.readonly,
            )
            for f in spec
            if not f.internal and engine.policy.readable_field(spec, actor, f.name)
        ]
        entities.append(
            EntityMeta(
                name=spec.name, plural=camel(spec.plural), label=ctx.label(spec), fields=fields
            )
        )
    workflows = [
        WorkflowMeta(
            name=wf.name,
            label=ctx.label(wf),
            entity=wf.entity,
            field=camel(wf.field),
            initial=wf.initial,
            states=[
                StateMeta(
                    name=s.name,
                    label=ctx.label(s),
                    final=s.final,
                    outcome=s.outcome,
                    probability=s.probability,
                    rotten_after_days=s.rotten_after_days,
                )
                for s in wf.states.values()
            ],
            transitions=[
                TransitionMeta(
                    trigger=t.trigger,
                    label=ctx.label(t) or t.trigger,
                    sources=list(t.sources),
                    dest=t.dest,
                    roles=list(t.roles),
                )
                for t in wf.transitions
            ],
            mermaid=to_mermaid(wf),
        )
        for wf in engine.workflows.values()
    ]
    roles = [RoleMeta(name=name, label=ctx.label(role)) for name, role in engine.role_defs.items()]
    return Metadata(entities=entities, workflows=workflows, roles=roles)
