"""archive.v1.Sealing: evidence bundles, checkpoints, consistency proofs, on-demand audits,
for the caller's tenant only; and, for the operator, an audit of every tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio

from archive.access import record_access
from archive.blobstore import BlobStore
from archive.document_errors import ContentDamaged, DocumentNotFound
from archive.documents import document_stream, parse_document_id
from archive.eventstore import EventStore, first_event
from archive.grpcserver import InvalidArgument, current_principal
from archive.grpcserver.errors import NotReadyYet, PermissionDenied
from archive.sealing.leaves import leaf_bytes
from archive.sealing.merkle import leaf_hash
from archive.v1 import events_pb2, sealing_pb2, sealing_pb2_grpc
from services.sealing.audit import CheckpointVerifier, IntegrityAuditor, audited_logs
from services.sealing.evidence import TrustMaterial, build_bundle
from services.sealing.sealer import Sealer

INGESTED = events_pb2.DocumentIngested.DESCRIPTOR.full_name


class SealingServicer(sealing_pb2_grpc.SealingServicer):
    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        sealer: Sealer,
        trust: TrustMaterial,
        verify_checkpoint: CheckpointVerifier,
        *,
        evidence_wait: Callable[[], float] = lambda: 3.0,
        auditor: IntegrityAuditor | None = None,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._trust = trust
        self._evidence_wait = evidence_wait
        # Shared with the scheduled audits when given, so that they too take turns.
        self._auditor = auditor or IntegrityAuditor(store, blobs, verify_checkpoint)

    async def GetEvidence(
        self, request: sealing_pb2.GetEvidenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sealing_pb2.EvidenceBundle:
        principal = current_principal()
        tenant = principal.tenant
        if not request.document_id.value:
            raise InvalidArgument("document_id.value", "give the id from the deposit receipt")
        document_id = parse_document_id(request.document_id.value)
        deposit = await first_event(self._store, document_stream(tenant, document_id))
        if deposit is None or deposit.type != INGESTED:
            raise DocumentNotFound(document_id)
        if not await self._sealer.wait_sealed(tenant, deposit.event_id, self._evidence_wait()):
            raise NotReadyYet(
                f"document {document_id} is not yet covered by a checkpoint; retry shortly",
                retry_after_seconds=1.0,
            )
        tenant_log = self._sealer.logs[tenant]
        index = tenant_log.index_of_event[deposit.event_id]
        checkpoint = tenant_log.checkpoint_covering(index)
        assert checkpoint is not None  # wait_sealed said so
        leaf = leaf_bytes(deposit)
        if leaf_hash(leaf) != tenant_log.tree.leaf_hash(index):
            raise ContentDamaged(document_id, "its journal entry no longer matches what was sealed")
        bundle = build_bundle(
            leaf=leaf,
            leaf_index=index,
            proof=tenant_log.tree.inclusion_proof(index, checkpoint.tree_size),
            checkpoint=checkpoint,
            trust=self._trust,
            document_id=document_id,
        )
        await record_access(self._store, principal, document_id, "evidence")
        return sealing_pb2.EvidenceBundle(
            zip=bundle, leaf_index=index, tree_size=checkpoint.tree_size
        )

    async def GetCheckpoint(
        self,
        request: sealing_pb2.GetCheckpointRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> sealing_pb2.SignedCheckpoint:
        return self._signed(self._checkpoint(request.tree_size, "tree_size"))

    async def GetConsistencyProof(
        self,
        request: sealing_pb2.GetConsistencyProofRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> sealing_pb2.ConsistencyProof:
        older = self._checkpoint(request.from_size, "from_size", latest_if_zero=False)
        newer = self._checkpoint(request.to_size, "to_size")
        if older.tree_size > newer.tree_size:
            raise InvalidArgument("from_size", "must not be larger than to_size")
        tree = self._sealer.logs[current_principal().tenant].tree
        return sealing_pb2.ConsistencyProof(
            from_size=older.tree_size,
            to_size=newer.tree_size,
            hashes=tree.consistency_proof(older.tree_size, newer.tree_size),
            from_checkpoint=self._signed(older),
            to_checkpoint=self._signed(newer),
        )

    async def RunIntegrityAudit(
        self,
        request: sealing_pb2.RunIntegrityAuditRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> events_pb2.IntegrityAuditCompleted:
        tenant_log = self._sealer.log_of(current_principal().tenant)
        return await self._auditor.audit(tenant_log, trigger="on-demand")

    async def RunStoreIntegrityAudit(
        self,
        request: sealing_pb2.RunStoreIntegrityAuditRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[events_pb2.IntegrityAuditCompleted]:
        # The auth interceptor already admits only the operator here; this keeps it so if
        # its method list ever drifts.
        if not current_principal().is_operator:
            raise PermissionDenied(
                "an audit of every tenant reads every tenant's data: it needs the operator token"
            )
        async for report in self._auditor.audit_each(
            audited_logs(self._sealer.logs), trigger="operator"
        ):
            yield report

    def _checkpoint(
        self, size: int, field: str, *, latest_if_zero: bool = True
    ) -> events_pb2.CheckpointSealed:
        tenant_log = self._sealer.logs.get(current_principal().tenant)
        if tenant_log is None or tenant_log.latest_checkpoint is None:
            raise NotReadyYet("no checkpoint yet for this tenant; retry shortly")
        if size == 0 and latest_if_zero:
            return tenant_log.latest_checkpoint
        checkpoint = tenant_log.checkpoint_of_size(size)
        if checkpoint is None:
            raise InvalidArgument(
                field, f"no checkpoint of size {size}; use the size of a checkpoint you hold"
            )
        return checkpoint

    def _signed(self, checkpoint: events_pb2.CheckpointSealed) -> sealing_pb2.SignedCheckpoint:
        tsa_chain_pem, tsa_root_pem = self._trust.tsa_of(checkpoint)
        return sealing_pb2.SignedCheckpoint(
            checkpoint=checkpoint.checkpoint,
            seal=checkpoint.seal,
            timestamp_response=checkpoint.timestamp_response,
            seal_chain_pem=self._trust.seal_chain_pem,
            tsa_chain_pem=tsa_chain_pem,
            root_pem=self._trust.root_pem,
            tsa_root_pem=tsa_root_pem,
        )
