"""Roles on tenant tokens, against the real servicers (tests/archive_in_memory.py): what a
token may do is what its roles allow, a missing role is PERMISSION_DENIED naming it, and a
token from before roles keeps what it could do then."""

from __future__ import annotations

import pytest
from archive_in_memory import InMemoryArchive

from archive.client import ArchiveClient
from archive.client.errors import InvalidArgument, PermissionDenied
from archive.eventstore import ANY, NewEvent
from archive.eventstore.memory import InMemoryEventStore
from archive.tenancy import TenantRegistry, create_tenant, tenant_stream
from archive.tenancy.roles import ALL_ROLES, LEGACY_ROLES, METHOD_ROLES
from archive.tenancy.tokens import generate_token
from archive.v1 import common_pb2, events_pb2
from services.catalog import SERVICES

OPERATOR_ONLY = {"archive.v1.TenantAdmin", "archive.v1.Sealing/RunStoreIntegrityAudit"}


def test_every_tenant_method_of_the_catalog_says_which_role_it_needs() -> None:
    methods = {
        f"/{descriptor.full_name}/{method.name}"
        for entry in SERVICES
        for descriptor in entry.descriptors
        if descriptor.full_name not in OPERATOR_ONLY
        for method in descriptor.methods
        if f"{descriptor.full_name}/{method.name}" not in OPERATOR_ONLY
    }
    assert methods == set(METHOD_ROLES)
    assert {role for role in METHOD_ROLES.values() if role} <= ALL_ROLES


async def test_a_read_only_token_reads_but_cannot_deposit_nor_fetch_evidence(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    receipt = await client.upload(b"%PDF-1.7 x", file_name="x.pdf")
    async with ArchiveClient(archive.config()) as admin:
        issued = await admin.issue_token("acme", "reader", ["read"])
    assert issued.roles == ("read",)
    async with ArchiveClient(archive.config(issued.token)) as reader:
        assert (await reader.whoami()).roles == ("read",)
        assert (await reader.get_document(receipt.document_id)).sha256 == receipt.sha256
        with pytest.raises(PermissionDenied) as refused:
            await reader.upload(b"more", file_name="y.pdf")
        assert refused.value.reason == "MISSING_ROLE" and "'deposit'" in refused.value.message
        assert refused.value.metadata["role"] == "deposit"
        with pytest.raises(PermissionDenied) as refused:
            await reader.get_checkpoint()
        assert refused.value.reason == "MISSING_ROLE" and "'audit'" in refused.value.message
    assert len(archive.deposits()) == 1  # the refused upload stored nothing


async def test_an_audit_token_sees_the_journal_never_the_content(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    receipt = await client.upload(b"%PDF-1.7 secret", file_name="s.pdf")
    archive.wait_sealed(receipt.document_id)
    async with ArchiveClient(archive.config()) as admin:
        issued = await admin.issue_token("acme", "auditor", ["audit"])
    async with ArchiveClient(archive.config(issued.token)) as auditor:
        assert (await auditor.get_checkpoint()).tree_size >= 1
        assert await auditor.get_evidence(receipt.document_id)
        with pytest.raises(PermissionDenied, match="'read'"):
            await auditor.download_bytes(receipt.document_id)


async def test_an_unknown_role_is_refused_and_issues_nothing(archive: InMemoryArchive) -> None:
    async with ArchiveClient(archive.config()) as admin:
        with pytest.raises(InvalidArgument, match="unknown role 'admin'"):
            await admin.issue_token("acme", "bad", ["read", "admin"])
    issued = [
        e async for e in archive.store.read_stream(tenant_stream("acme"))
        if e.type == "archive.v1.TenantTokenIssued"
    ]
    assert len(issued) == 1  # the tenant's first token only


async def test_a_token_issued_before_roles_keeps_deposit_read_and_audit() -> None:
    store = InMemoryEventStore()
    await create_tenant(store, "acme")
    old = generate_token()
    # A TenantTokenIssued as written before roles existed: no roles field.
    legacy = events_pb2.TenantTokenIssued(
        tenant=common_pb2.TenantId(value="acme"), token_id=old.token_id, token_sha256=old.sha256
    )
    await store.append(tenant_stream("acme"), [NewEvent.of(legacy)], ANY)
    registry = TenantRegistry(store)
    await registry.start()
    try:
        principal = (await registry.verify(old.token.reveal())).principal
    finally:
        await registry.stop()
    assert principal is not None and principal.roles == LEGACY_ROLES
