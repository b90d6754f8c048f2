"""Master key salts: the HKDF salt stored with each master key id, created on
first use. Implements ``config.ports.SaltStore``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from liya_engine.crypto.cipher import new_salt
from liya_engine.storage.engine import WRITE_OPTION
from liya_engine.storage.tables import MasterKeySaltRow

_ATTEMPTS = 3


class SaltTable:
    """The ``master_key_salts`` table behind a session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def salts_for(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The salt of each master key id, creating missing ones.

        Replicas starting together with a new key agree on one salt: the first
        insert wins and the others read it.
        """
        wanted = list(dict.fromkeys(key_ids))
        for _attempt in range(_ATTEMPTS):
            async with self._sessions() as session:
                # The write lock from BEGIN on SQLite: read and insert are one step.
                await session.connection(execution_options={WRITE_OPTION: True})
                rows = (
                    await session.execute(
                        select(MasterKeySaltRow).where(MasterKeySaltRow.key_id.in_(wanted))
                    )
                ).scalars()
                salts = {r.key_id: r.salt for r in rows}
                missing = [k for k in wanted if k not in salts]
                if not missing:
                    return salts
                now = datetime.now(UTC)
                for key_id in missing:
                    salts[key_id] = new_salt()
                    session.add(
                        MasterKeySaltRow(key_id=key_id, salt=salts[key_id], create_time=now)
                    )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()  # another replica was first: read its salt
                    continue
                return salts
        raise RuntimeError("master key salts kept changing; retry")
