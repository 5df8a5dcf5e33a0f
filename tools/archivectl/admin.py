"""archivectl's administration commands, with the operator token: `tenant create`, `token
issue` and `token revoke`."""

from __future__ import annotations

import argparse

from archive.client import ArchiveClient, ClientConfig, IssuedToken
from archive.tenancy.roles import ALL_ROLES
from tools.archivectl.args import Commands, add_command, json_flag
from tools.archivectl.output import EXIT_OK, print_error, print_line, to_json

ROLE_CHOICES = sorted(ALL_ROLES)


def register(commands: Commands) -> None:
    tenant = add_command(commands, "tenant", "administer tenants (operator token)", None)
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    create = add_command(
        tenant_commands,
        "create",
        "create a tenant and print its first token",
        _tenant_create,
        needs="operator",
    )
    create.add_argument("tenant", metavar="NAME")
    create.add_argument("--display-name", default="", metavar="TEXT")
    json_flag(create)

    token = add_command(commands, "token", "issue and revoke tenant tokens (operator token)", None)
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = add_command(
        token_commands, "issue", "issue a new token and print it", _token_issue, needs="operator"
    )
    issue.add_argument("tenant", metavar="TENANT")
    issue.add_argument("--description", default="", metavar="TEXT")
    issue.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        choices=ROLE_CHOICES,
        help="what the token may do (repeatable); none given: deposit, read and audit",
    )
    json_flag(issue)
    revoke = add_command(
        token_commands, "revoke", "revoke a token by its id", _token_revoke, needs="operator"
    )
    revoke.add_argument("tenant", metavar="TENANT")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    json_flag(revoke)


async def _tenant_create(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        issued = await client.create_tenant(args.tenant, args.display_name)
    _print_token(issued, as_json=args.json)
    return EXIT_OK


async def _token_issue(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        issued = await client.issue_token(args.tenant, args.description, args.roles)
    _print_token(issued, as_json=args.json)
    return EXIT_OK


async def _token_revoke(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        await client.revoke_token(args.tenant, args.token_id)
    if args.json:
        print_line(to_json({"tenant": args.tenant, "token_id": args.token_id, "revoked": True}))
    else:
        print_line(f"revoked token {args.token_id} of tenant {args.tenant}")
    return EXIT_OK


def _print_token(issued: IssuedToken, *, as_json: bool) -> None:
    # Printing the secret is the point of these commands: it is shown once, never again.
    if as_json:
        print_line(to_json(issued.to_dict()))
        return
    print_line(
        f"tenant:   {issued.tenant}\ntoken_id: {issued.token_id}\ntoken:    {issued.token}\n"
        f"roles:    {', '.join(issued.roles)}"
    )
    print_error("the token is shown only once: store it now (e.g. as ARCHIVE_TOKEN)")
