"""What a local node is made of: a core distribution zip plus module jars, all from Maven Central.

The ``integ-test-zip`` distributions carry only the core and the transport module; the modules we
need (``rank_features`` lives in mapper-extras, language analyzers in analysis-common) are published
as plain jars without their plugin descriptor, so the descriptor is written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stair_es.errors import UsageError


@dataclass(frozen=True)
class Artifact:
    """A Maven coordinate; ``sha256`` pins the exact bytes of the versions we test."""

    group: str
    artifact: str
    version: str
    packaging: str = "jar"
    sha256: str | None = None

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}:{self.packaging}"

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.{self.packaging}"

    @property
    def repo_path(self) -> str:
        """Path below a Maven repository root."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"


@dataclass(frozen=True)
class Module:
    """A module folder to create under ``modules/`` with a generated descriptor."""

    name: str
    classname: str
    jar: Artifact
    description: str
    extended_plugins: str = ""


@dataclass(frozen=True)
class Distribution:
    """One engine release that can be assembled into a runnable node home."""

    engine: str  # "opensearch" | "elasticsearch"
    version: str
    core: Artifact
    modules: tuple[Module, ...] = field(default_factory=tuple)
    min_java: int = 11
    max_java: int | None = None

    @property
    def key(self) -> str:
        return f"{self.engine}-{self.version}"

    @property
    def launcher(self) -> str:
        return f"bin/{self.engine}"

    @property
    def conf_env(self) -> str:
        return "OPENSEARCH_PATH_CONF" if self.engine == "opensearch" else "ES_PATH_CONF"

    @property
    def java_opts_env(self) -> str:
        return "OPENSEARCH_JAVA_OPTS" if self.engine == "opensearch" else "ES_JAVA_OPTS"

    @property
    def java_home_env(self) -> str:
        return "OPENSEARCH_JAVA_HOME" if self.engine == "opensearch" else "ES_JAVA_HOME"

    @property
    def config_file(self) -> str:
        return f"{self.engine}.yml"

    def descriptor(self, module: Module) -> str:
        """plugin-descriptor.properties for a module jar taken from Maven."""
        version_key = "opensearch.version" if self.engine == "opensearch" else "elasticsearch.version"
        return (
            f"description={module.description}\n"
            f"version={self.version}\n"
            f"name={module.name}\n"
            f"classname={module.classname}\n"
            f"java.version=11\n"
            f"{version_key}={self.version}\n"
            f"extended.plugins={module.extended_plugins}\n"
            "has.native.controller=false\n"
        )


def _opensearch(version: str, pins: dict[str, str] | None = None, min_java: int = 11) -> Distribution:
    pins = pins or {}
    plugin = "org.opensearch.plugin"
    # 3.0 renamed the module plugin classes (same modules, same artifacts)
    suffix = "ModulePlugin" if int(version.split(".")[0]) >= 3 else "Plugin"

    def jar(name: str) -> Artifact:
        return Artifact(plugin, name, version, sha256=pins.get(name))

    return Distribution(
        engine="opensearch",
        version=version,
        core=Artifact(
            "org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip", pins.get("opensearch")
        ),
        modules=(
            Module(
                "mapper-extras",
                f"org.opensearch.index.mapper.MapperExtras{suffix}",
                jar("mapper-extras-client"),
                "Adds advanced field mappers (rank_features, scaled_float, ...)",
            ),
            # analysis-common normally extends lang-painless only to whitelist a few classes for
            # scripts; without painless that hook is never loaded, so it stands alone here.
            Module(
                "analysis-common",
                f"org.opensearch.analysis.common.CommonAnalysis{suffix}",
                jar("analysis-common"),
                "Adds analyzers, tokenizers and filters (english, ...)",
            ),
        ),
        min_java=min_java,
    )


def _elasticsearch(version: str, pins: dict[str, str] | None = None) -> Distribution:
    """Elasticsearch 7.17: the newest release whose mapper-extras module jar is on Maven Central.

    Elastic publishes no analysis-common jar (so no ``english`` analyzer: the ES template uses a
    core-only caption analyzer) and no mapper-extras for 8.x/9.x (no ``rank_features`` there). 7.x
    needs the Java Security Manager, which Java 24 removed.
    """
    pins = pins or {}
    return Distribution(
        engine="elasticsearch",
        version=version,
        core=Artifact(
            "org.elasticsearch.distribution.integ-test-zip",
            "elasticsearch",
            version,
            "zip",
            pins.get("elasticsearch"),
        ),
        modules=(
            Module(
                "mapper-extras",
                "org.elasticsearch.index.mapper.MapperExtrasPlugin",
                Artifact(
                    "org.elasticsearch.plugin",
                    "mapper-extras-client",
                    version,
                    sha256=pins.get("mapper-extras-client"),
                ),
                "Adds advanced field mappers (rank_features, scaled_float, ...)",
            ),
        ),
        min_java=11,
        max_java=23,
    )


def _elasticsearch_core(version: str, sha256: str | None = None) -> Distribution:
    """Elasticsearch 8.x/9.x: the core zip alone (x-pack core and security, no mapper-extras).

    Without mapper-extras there is no ``rank_features``: stair-es stores tokens in the core
    ``sparse_vector`` field (8.11+) there, decided from the node's module list at index creation.
    """
    major = int(version.split(".")[0])
    if (major, int(version.split(".")[1])) < (8, 11):
        raise UsageError(
            f"Elasticsearch {version} has neither rank_features (no mapper-extras jar on Maven Central "
            "after 7.17) nor sparse_vector (8.11+): use 7.17.x or 8.11+"
        )
    return Distribution(
        engine="elasticsearch",
        version=version,
        core=Artifact(
            "org.elasticsearch.distribution.integ-test-zip", "elasticsearch", version, "zip", sha256
        ),
        min_java=21 if major >= 9 else 17,
    )


# 3.8 (Lucene 10.5, Java 21+) is the default: on our benchmark its exact sparse queries are 3-8x
# faster than 2.19's (Lucene 9.12). 2.19.6, the last 2.x line, stays tested in CI.
DEFAULT_OPENSEARCH_VERSION = "3.8.0"
PREVIOUS_OPENSEARCH_VERSION = "2.19.6"
# The newest Elasticsearch that runs from Maven Central here; 8.x and 7.17 (rank_features) stay tested.
DEFAULT_ELASTICSEARCH_VERSION = "9.1.0"
ELASTICSEARCH_8_VERSION = "8.15.0"
ELASTICSEARCH_7_VERSION = "7.17.29"

# Pinned bytes of the tested releases: a changed artifact is refused, not trusted.
_OPENSEARCH_PINS = {
    "3.8.0": {
        "opensearch": "196c3cf4602c394f2e40e6174ccbf2a924eae37246f08fa6bbb6b75f9fd5ff1f",
        "mapper-extras-client": "dde7a9f69ccd3ae4bb5229e8f52d0b8c81bbde65443ca3eaa472c81bd7dff43d",
        "analysis-common": "5747fdbd1ee111427f447aa1a237407afc1a202e6d9d8e894dd427d6a7538aeb",
    },
    "2.19.6": {
        "opensearch": "71d6d8b1c637f3faecda0752b184b1cc526fc6eaad59ec1408c6327bb00b9293",
        "mapper-extras-client": "4a486870432b71a190dca3aaba91f1fba58837e4a4146b2982e8a938164a9a34",
        "analysis-common": "187378844d92a043b935038f9ae168f7812f686b1c1c7128f8b97731baff8a1a",
    },
}


_PINS_ES_7_17_29 = {
    "elasticsearch": "841ee00be1a72ba8e707b5a2fb55f23fe7a4184369b4585393238b1c903eedaf",
    "mapper-extras-client": "3fc4139860139a524b0e56309261c943c90863da0c1bb2d1b0fc86d78f1525cd",
}


# 9.x integ-test zips come without a .sha1 on Maven Central: the SHA-256 pin is the only check
_PINS_ES_CORE = {
    "8.15.0": "c473366cf9e27bf6af9a9981a5e57dc206c04217439dbdf58df60e3683dff08b",
    "9.1.0": "be5c5440bb6344cee4070f8f77a6c3cd72363db494944047cdd93748c4e19111",
}


_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")


def get_distribution(engine: str = "opensearch", version: str | None = None) -> Distribution:
    """The distribution to assemble; unpinned versions are still verified against Maven's SHA-1."""
    if version is not None and not _VERSION_RE.fullmatch(version):
        # it becomes a Maven coordinate and a folder name: "3.8.0/../../x" must not reach either
        raise UsageError(f"engine version {version!r} is not a release number like 3.8.0 or 7.17.29")
    if engine == "opensearch":
        version = version or DEFAULT_OPENSEARCH_VERSION
        pins = _OPENSEARCH_PINS.get(version)
        major = int(version.split(".")[0])
        return _opensearch(version, pins, min_java=21 if major >= 3 else 11)
    if engine == "elasticsearch":
        version = version or DEFAULT_ELASTICSEARCH_VERSION
        if version.startswith("7."):
            return _elasticsearch(version, _PINS_ES_7_17_29 if version == "7.17.29" else None)
        return _elasticsearch_core(version, _PINS_ES_CORE.get(version))
    raise UsageError(f"unknown engine '{engine}': choose opensearch or elasticsearch")
