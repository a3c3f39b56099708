"""The dependency-injector container: the one place that names concrete adapters.

Reading it tells which adapter stands behind each port. Tests override providers
or build use cases from fakes.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from adapters.security.run_keys import HkdfRunKeyDeriver
from adapters.sql.api_keys import SqlApiKeyStore
from adapters.sql.database import Database, DatabaseConfig
from adapters.sql.deployments import SqlDeployments
from adapters.sql.queue import SqlQueue
from adapters.sql.reads import SqlStreamReader, SqlWorldReader
from adapters.system import LocalSignal, SystemClock
from app.settings import Settings
from domain.ids import IdFactory
from domain.use_cases.authenticate import Authenticate, SeedApiKeys
from domain.use_cases.get_encryption_key import GetDeploymentId, GetEncryptionKey
from domain.use_cases.proxy_world_event import ProxyWorldEvent
from domain.use_cases.publish_message import PublishMessage
from domain.use_cases.query_world import QueryWorld
from domain.use_cases.streams import InspectStream, ReadStream, WriteStream


def _database_config(settings: Settings) -> DatabaseConfig:
    return DatabaseConfig(sqlite_path=settings.database_path, database_url=settings.database_url)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    run_key_secret: providers.Dependency[bytes | None] = providers.Dependency()  # from runtime

    # infrastructure
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(IdFactory)
    signal = providers.Singleton(LocalSignal)
    database = providers.Singleton(Database, providers.Callable(_database_config, settings))
    engine = providers.Callable(lambda db: db.engine, database)
    writer = providers.Callable(lambda db: db.writer, database)

    # ports → adapters
    world_reader = providers.Singleton(SqlWorldReader, engine)
    stream_reader = providers.Singleton(SqlStreamReader, engine)
    queue = providers.Singleton(SqlQueue, writer)
    deployments = providers.Singleton(SqlDeployments, engine)
    api_keys = providers.Singleton(SqlApiKeyStore, engine, writer)
    run_keys = providers.Singleton(HkdfRunKeyDeriver, run_key_secret)

    # use cases
    authenticate = providers.Singleton(Authenticate, api_keys)
    seed_api_keys = providers.Singleton(SeedApiKeys, api_keys, ids, clock)
    proxy_world_event = providers.Singleton(ProxyWorldEvent, writer, ids, clock, signal)
    query_world = providers.Singleton(QueryWorld, world_reader)
    write_stream = providers.Singleton(WriteStream, writer, ids, signal)
    read_stream = providers.Singleton(
        ReadStream,
        stream_reader,
        signal,
        providers.Callable(lambda s: s.stream_poll_interval, settings),
    )
    inspect_stream = providers.Singleton(InspectStream, stream_reader)
    publish_message = providers.Singleton(PublishMessage, writer, ids, clock, signal)
    get_encryption_key = providers.Singleton(GetEncryptionKey, world_reader, run_keys, deployments)
    get_deployment_id = providers.Singleton(GetDeploymentId, deployments)
