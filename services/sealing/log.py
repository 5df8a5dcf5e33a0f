"""A tenant's Merkle log as the sealer knows it, rebuilt from the tenant's seallog stream
(`<tenant>.seallog.main`): which event is which leaf, and the checkpoints cut so far."""

from __future__ import annotations

from dataclasses import dataclass, field

from archive.eventstore import EventStore, RecordedEvent, StreamName, StreamNotFound
from archive.sealing.merkle import MerkleTree
from archive.v1 import events_pb2

SEALLOG_CATEGORY = "seallog"
LEAVES_APPENDED = events_pb2.LogLeavesAppended.DESCRIPTOR.full_name
CHECKPOINT_SEALED = events_pb2.CheckpointSealed.DESCRIPTOR.full_name


def seallog_stream(tenant: str) -> StreamName:
    return StreamName(tenant, SEALLOG_CATEGORY, "main")


@dataclass
class TenantLog:
    tenant: str
    tree: MerkleTree = field(default_factory=MerkleTree)
    event_ids: list[str] = field(default_factory=list)
    index_of_event: dict[str, int] = field(default_factory=dict)
    # Highest global position of an event sealed in this log: later events are new leaves.
    last_position: int = 0
    checkpoints: list[events_pb2.CheckpointSealed] = field(default_factory=list)
    # Version of the seallog stream this state reflects (None: no stream yet); the next append
    # expects exactly it, so a second sealer racing on the tenant loses instead of forking.
    stream_version: int | None = None

    @property
    def size(self) -> int:
        return len(self.event_ids)

    @property
    def latest_checkpoint(self) -> events_pb2.CheckpointSealed | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def apply(self, recorded: RecordedEvent) -> None:
        if recorded.type == LEAVES_APPENDED:
            leaves = events_pb2.LogLeavesAppended.FromString(recorded.data)
            if leaves.first_index != self.size:
                raise RuntimeError(
                    f"seallog of {self.tenant} is inconsistent: leaves start at "
                    f"{leaves.first_index}, the log has {self.size}"
                )
            for leaf, event_id, position in zip(
                leaves.leaf_hashes, leaves.event_ids, leaves.event_positions, strict=True
            ):
                self.index_of_event[event_id] = self.tree.size
                self.tree.append(leaf)
                self.event_ids.append(event_id)
                self.last_position = max(self.last_position, position)
        elif recorded.type == CHECKPOINT_SEALED:
            self.checkpoints.append(events_pb2.CheckpointSealed.FromString(recorded.data))
        self.stream_version = recorded.version

    def record_round(
        self,
        leaves: events_pb2.LogLeavesAppended,
        checkpoint: events_pb2.CheckpointSealed,
        version: int,
    ) -> None:
        """Book a round this process appended, whose leaves are already in `tree`."""
        for event_id, position in zip(leaves.event_ids, leaves.event_positions, strict=True):
            self.index_of_event[event_id] = len(self.event_ids)
            self.event_ids.append(event_id)
            self.last_position = max(self.last_position, position)
        assert len(self.event_ids) == self.tree.size
        self.checkpoints.append(checkpoint)
        self.stream_version = version

    def checkpoint_covering(self, index: int) -> events_pb2.CheckpointSealed | None:
        latest = self.latest_checkpoint
        return latest if latest is not None and latest.tree_size > index else None

    def checkpoint_of_size(self, size: int) -> events_pb2.CheckpointSealed | None:
        for checkpoint in self.checkpoints:
            if checkpoint.tree_size == size:
                return checkpoint
        return None


async def load_tenant_log(store: EventStore, tenant: str) -> TenantLog:
    log = TenantLog(tenant)
    try:
        async for recorded in store.read_stream(seallog_stream(tenant)):
            log.apply(recorded)
    except StreamNotFound:
        pass
    return log
