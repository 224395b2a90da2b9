"""The config schema: each ``AuthConfig`` field is declared once, with everything every reader needs.

A field is declared in ``config.py`` as ``insecure: bool = setting(False, yaml="insecure",
ini=("platform", "insecure"), parse=parsers.boolean, doc=...)``.  From those declarations come:

* the YAML keys of the ``admin:``/``flyteauth:`` sections, the INI keys of flytekit's file, and the
  environment variables of every dialect (flytekit ``FLYTE_<SECTION>_<OPTION>``, flyte 2.x
  ``FLYTE_ADMIN_<KEY>`` plus named extras, ours ``FLYTEAUTH_<FIELD>``);
* validation and conversion in ``AuthConfig(...)`` itself (so ``AuthConfig(insecure="false")`` is TLS and
  ``AuthConfig(insecure="maybe")`` is a ``ConfigError`` naming the field);
* masking (``secret``, ``mask``) in ``flyteauth config``;
* "accepted for compatibility, no effect" for keys we read but do not act on (``compat``);
* the README's table of keys (:func:`markdown_table`; a test keeps the README in step).

A leaf module: it imports ``parsers`` and ``errors`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .errors import ConfigError
from .parsers import Parser, argv, string, url_without_password

__all__ = ["COMPAT", "Setting", "mask", "setting"]

#: The metadata key under which an attrs field carries its :class:`Setting`.
SCHEMA = "flyteauth.setting"
#: What ``flyteauth config`` says about a compatibility-only key.
COMPAT = "accepted for compatibility, no effect"


@attrs.frozen
class Setting:
    """How one ``AuthConfig`` field is spelled in each dialect, parsed, and shown.

    ``yaml``: key in ``admin:``/``flyteauth:`` (nested keys as ``pkceConfig.timeout``); ``ini``: flytekit's
    ``(section, option)``; ``env``: extra variables beyond the derived ones (``FLYTE_AUTH_TYPE``);
    ``flyte2_env``: whether ``FLYTE_ADMIN_<KEY>`` is read (flat YAML keys only); ``ours``: whether
    ``FLYTEAUTH_<FIELD>`` is read.  ``parse(key, raw)`` converts and validates.  ``secret``: the value is
    never shown; ``mask``: ``"url"`` hides a password in a URL, ``"argv"`` shows only the program of a
    command.  ``compat``: why the key is accepted although it has no effect (``None``: it is used).
    """

    field: str = ""
    yaml: str | None = None
    ini: tuple[str, str] | None = None
    env: tuple[str, ...] = ()
    flyte2_env: bool = True
    ours: bool = True
    parse: Parser = string
    secret: bool = False
    mask: str | None = None
    compat: str | None = None
    doc: str = ""

    def env_names(self) -> dict[str, tuple[str, ...]]:
        """Environment variables per dialect, highest precedence first."""
        flyte2 = [f"FLYTE_ADMIN_{self.yaml.upper()}"] if self.yaml and "." not in self.yaml and self.flyte2_env else []
        flytekit = [f"FLYTE_{self.ini[0].upper()}_{self.ini[1].upper()}"] if self.ini else []
        return {
            "FLYTEAUTH": (f"FLYTEAUTH_{self.field.upper()}",) if self.ours else (),
            "flyte 2.x": (*flyte2, *self.env),
            "flytekit": tuple(flytekit),
        }


def setting(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    yaml: str | None = None,
    ini: tuple[str, str] | None = None,
    env: Iterable[str] = (),
    flyte2_env: bool = True,
    ours: bool = True,
    parse: Parser = string,
    secret: bool = False,
    mask: str | None = None,
    compat: str | None = None,
    doc: str = "",
) -> Any:
    """An ``AuthConfig`` attrs field carrying its :class:`Setting` (the field name is filled in later)."""
    spec = Setting(yaml=yaml, ini=ini, env=tuple(env), flyte2_env=flyte2_env, ours=ours, parse=parse,
                   secret=secret, mask=mask, compat=compat, doc=doc)
    if factory is not None:
        return attrs.field(factory=factory, metadata={SCHEMA: spec}, repr=not secret and mask is None)
    return attrs.field(default=default, metadata={SCHEMA: spec}, repr=not secret and mask is None)


def settings_of(cls: type) -> dict[str, Setting]:
    """Field name -> Setting, in declaration order, for an attrs class declared with :func:`setting`."""
    out = {}
    for field in attrs.fields(cls):
        spec = field.metadata.get(SCHEMA)
        if spec is not None:
            out[field.name] = attrs.evolve(spec, field=field.name)
    return out


def mask(spec: Setting | None, value: Any) -> str:
    """How a value is shown by ``flyteauth config``: never a secret."""
    if value is None or value in ((), ""):
        return repr(value)
    if spec is not None and spec.secret:
        return "****"
    if spec is not None and spec.mask == "url":
        return repr(url_without_password(value))
    if spec is not None and spec.mask == "argv":
        try:  # a raw option value may be a string ("sh -c ..."): split it, never show it whole
            args = argv(spec.field, value)
        except ConfigError:
            return "'(not a valid command)'"
        return repr((*args[:1], f"<{len(args) - 1} arguments hidden>") if len(args) > 1 else args)
    return repr(value)


def markdown_table(settings: dict[str, Setting], defaults: dict[str, Any]) -> str:
    """The README's table of keys: YAML key, Python name (``AuthConfig(...)`` and ``load_config(...)``
    keyword), INI key, environment variables, default, meaning."""
    rows = ["| `admin:` / `flyteauth:` key | Python (`AuthConfig`) | flytekit INI | environment | default | what |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, spec in settings.items():
        envs = [v for names in spec.env_names().values() for v in names]
        yaml = f"`{spec.yaml}`" if spec.yaml else "(not in YAML)"
        ini = f"`[{spec.ini[0]}] {spec.ini[1]}`" if spec.ini else ""
        default = defaults.get(name)
        if default is attrs.NOTHING:
            shown = "required"
        else:
            shown = "" if default in (None, (), "") else f"`{default if isinstance(default, str) else repr(default)}`"
        what = f"*{COMPAT}* ({spec.compat})" if spec.compat else spec.doc
        rows.append(f"| {yaml} | `{name}=` | {ini} | {', '.join(f'`{v}`' for v in envs)} | {shown} | {what} |")
    return "\n".join(rows)
