"""What every Pushi model shares: the owning app, compound indexes, batch ids."""

from __future__ import annotations

import time
import typing

import appier
import appier_extras


class PushiBase(appier_extras.admin.Base):
    """Base of the Pushi models: admin records owned by one app (`instance`).

    Extending the admin base gives every record the common fields of the
    published server (`id, enabled, description, created, modified, meta`) and
    shows the models in the /admin back-office. `instance` is the ident of the
    app a record belongs to; queries scope by it explicitly, never through the
    request's session, so the worker thread and the back-office read the same.
    """

    instance = appier.field(
        index=True,
        safe=True,
        immutable=True,
        observations="""Ident of the app that owns the record""",
    )

    compound: tuple[tuple[tuple[str, int], ...], ...] = ()
    """ Compound indexes, each a sequence of (field, direction) pairs """

    unindexed: tuple[str, ...] = ()
    """ Inherited fields whose single-field index the model does without """

    @classmethod
    def is_abstract(cls) -> bool:
        """Only the concrete models have a collection of their own."""
        return True

    @classmethod
    def indexes(cls) -> list:
        """The single-field indexes Appier creates, less the `unindexed` ones."""
        return [
            (name, direction)
            for name, direction in super().indexes()
            if name not in cls.unindexed
        ]

    @classmethod
    def setup(cls) -> None:
        """Creates the model's indexes, compound ones included."""
        if "is_abstract" in cls.__dict__:
            return  # the abstract base has no collection to index
        super().setup()
        collection = cls._collection()
        for keys in cls.compound:
            # "simple" hands the key list to create_index as it is
            collection.ensure_index(list(keys), direction="simple")

    @classmethod
    def reserve_ids(cls, count: int) -> range:
        """Reserves `count` consecutive integer ids with one counter update.

        The counter is the one Appier's `increment` fields use, so records
        written in batches and records saved one by one never share an id.
        """
        counters = cls._collection(name="counters")
        name = cls._name() + ":id"
        value = counters.find_and_modify(
            {"_id": name}, {"$inc": {"seq": count}}, new=True, upsert=True
        )
        value = value or counters.find_one({"_id": name})
        last = value["seq"]
        return range(last - count + 1, last + 1)

    def record(self) -> dict:
        """The record as the REST API answers it: with `_id`, no private field."""
        cls = self.__class__
        return {
            name: value
            for name, value in self.map().items()
            if not cls.definition_n(name).get("private", False)
        }

    @staticmethod
    def common(instance: str, ident: int, now: float | None = None) -> dict:
        """The common record fields of a document written without the model."""
        stamp = int(time.time() if now is None else now)
        return dict(
            id=ident,
            enabled=True,
            description=None,
            created=stamp,
            modified=stamp,
            meta={},
            instance=instance,
        )

    @staticmethod
    def tell_state(name: str, *args: typing.Any) -> None:
        """Hands a change to the running State, when there is one.

        Model hooks call this, so a change made in the back-office reaches live
        sockets as one made through the REST API does. Outside a Pushi process
        (tests of the models, scripts) there is no State and nothing to tell.
        """
        state = getattr(appier.get_app(), "state", None)
        if state is None:
            return
        state.call(getattr(state, name), *args)
