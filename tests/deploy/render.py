"""Renders k8s/ the way `kubectl apply -k` would, without kubectl, for the deployment tests.

No Python package on PyPI renders kustomizations, so this implements the part of kustomize that
k8s/ uses: file and directory resources, components, ``configMapGenerator`` (with the content-hash
name suffix and the rewrite of references to it), ``labels`` (``includeTemplates``), ``images`` and
``$patch: delete`` patches. Anything else in a kustomization raises ``Unsupported`` instead of being
ignored, so a manifest change this renderer does not understand fails loudly rather than passing
unchecked. Like kustomize, it refuses files outside a kustomization's own directory.

The hash suffix is not kustomize's exact string (it is a stand-in of the same shape); only its
presence and the references that follow it matter to the tests.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_KEYS = frozenset(
    {"apiVersion", "kind", "resources", "components", "labels", "images", "configMapGenerator",
     "patches"})
KUSTOMIZATION_KINDS = {"Kustomization": "kustomize.config.k8s.io/v1beta1",
                       "Component": "kustomize.config.k8s.io/v1alpha1"}
# Where a pod template lives in each workload kind (kustomize's own field specs, the subset that exists).
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


class RenderError(Exception):
    """The kustomization is broken: kustomize itself would refuse it."""


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a manifest file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


# Marks a generated ConfigMap with its generator's name while a render runs, so that references to
# it from objects added at other levels (an overlay's components) follow the hashed name, as
# kustomize's name-reference tracking does. Removed before objects are returned.
_GENERATED_FROM = "render.internal/generated-from"


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl apply -k DIRECTORY` would send, in file order."""
    return _unmarked(_render(directory))


def render_overlay(resources: Iterable[Path], components: Iterable[Path] = ()) -> list[Obj]:
    """What an operator's overlay listing these resource and component directories renders."""
    objects: list[Obj] = []
    for directory in resources:
        objects.extend(_render(directory))
    for directory in components:
        objects = _build(directory, _read_kustomization(directory, "Component"), objects)
    return _unmarked(objects)


def _render(directory: Path) -> list[Obj]:
    return _build(directory, _read_kustomization(directory, "Kustomization"), [])


def _unmarked(objects: list[Obj]) -> list[Obj]:
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        if annotations.pop(_GENERATED_FROM, None) is not None and not annotations:
            del obj["metadata"]["annotations"]
    return objects


def referenced_files(directory: Path) -> Iterator[Path]:
    """Every file a kustomization (and the kustomizations it includes) reads."""
    kustomization = _read_kustomization(directory, None)
    yield directory / "kustomization.yaml"
    for entry in kustomization.get("resources", []) + kustomization.get("components", []):
        target = directory / entry
        if target.is_dir():
            yield from referenced_files(target)
        else:
            yield target
    for generator in kustomization.get("configMapGenerator", []):
        for spec in generator.get("files", []):
            yield directory / (spec.partition("=")[2] if "=" in spec else spec)
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            yield directory / patch["path"]


def _read_kustomization(directory: Path, kind: str | None) -> Obj:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(data) - KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{path}: keys {sorted(unknown)} are not implemented by this renderer")
    if kind is not None and data.get("kind", "Kustomization") != kind:
        raise RenderError(f"{path}: expected kind {kind}, found {data.get('kind')}")
    if data.get("apiVersion") != KUSTOMIZATION_KINDS.get(data.get("kind", "Kustomization")):
        raise RenderError(f"{path}: apiVersion {data.get('apiVersion')} does not fit kind {data.get('kind')}")
    return data


def _build(root: Path, kustomization: Obj, inherited: list[Obj]) -> list[Obj]:
    """Kustomize's order: resources, components, generators, then this level's transformers."""
    objects = list(inherited)
    for entry in kustomization.get("resources", []):
        target = root / entry
        if target.is_dir():
            objects.extend(_render(target))
        else:
            objects.extend(load_documents(_inside(root, entry)))
    for entry in kustomization.get("components", []):
        component = root / entry
        objects = _build(component, _read_kustomization(component, "Component"), objects)
    renames: dict[str, str] = {obj["metadata"]["annotations"][_GENERATED_FROM]: obj["metadata"]["name"]
                               for obj in objects if _GENERATED_FROM in obj["metadata"].get("annotations", {})}
    for generator in kustomization.get("configMapGenerator", []):
        config_map = _generate_config_map(root, generator)
        renames[generator["name"]] = config_map["metadata"]["name"]
        objects.append(config_map)
    for obj in objects:
        _rename_config_map_refs(obj, renames)
    for patch in kustomization.get("patches", []):
        objects = _apply_delete_patch(root, patch, objects)
    for label_set in kustomization.get("labels", []):
        _apply_labels(label_set, objects)
    for image in kustomization.get("images", []):
        _apply_image(image, objects)
    return objects


def _inside(root: Path, entry: str) -> Path:
    path = (root / entry).resolve()
    if not path.is_relative_to(root.resolve()):
        raise RenderError(f"{root}: {entry} is outside the kustomization root; kustomize refuses it")
    if not path.is_file():
        raise RenderError(f"{root}: {entry} does not exist")
    return path


def _generate_config_map(root: Path, generator: Obj) -> Obj:
    unknown = set(generator) - {"name", "files", "options"}
    unknown |= set(generator.get("options", {})) - {"labels", "disableNameSuffixHash"}
    if unknown:
        raise Unsupported(f"configMapGenerator {generator.get('name')}: {sorted(unknown)}")
    data: dict[str, str] = {}
    for spec in generator.get("files", []):
        key, _, source = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
        if key in data:
            raise RenderError(f"configMapGenerator {generator['name']}: key {key} given twice")
        data[key] = _inside(root, source).read_text(encoding="utf-8")
    options = generator.get("options", {})
    name = generator["name"]
    if not options.get("disableNameSuffixHash", False):
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        name = f"{name}-{digest[:10]}"
    metadata: Obj = {"name": name, "annotations": {_GENERATED_FROM: generator["name"]}}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def pod_template(obj: Obj) -> Obj | None:
    """The pod template of a workload object, or None for other kinds."""
    path = POD_TEMPLATE_PATHS.get(obj.get("kind", ""))
    node: Any = obj
    for key in path or ():
        node = node.get(key) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def _rename_config_map_refs(obj: Obj, renames: dict[str, str]) -> None:
    template = pod_template(obj)
    if template is None or not renames:
        return
    spec = template.get("spec", {})
    for volume in spec.get("volumes", []):
        refs = [volume.get("configMap")] + [
            source.get("configMap") for source in volume.get("projected", {}).get("sources", [])]
        for ref in refs:
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for item in container.get("envFrom", []):
            ref = item.get("configMapRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]


def _apply_delete_patch(root: Path, patch: Obj, objects: list[Obj]) -> list[Obj]:
    if "target" in patch or set(patch) - {"patch", "path"}:
        raise Unsupported(f"{root}: patch fields {sorted(patch)}")
    body = yaml.safe_load(patch["patch"]) if "patch" in patch else yaml.safe_load(
        _inside(root, patch["path"]).read_text(encoding="utf-8"))
    if body.get("$patch") != "delete":
        raise Unsupported(f"{root}: only `$patch: delete` patches are implemented")
    matches = [obj for obj in objects if obj.get("kind") == body["kind"]
               and obj.get("apiVersion") == body["apiVersion"]
               and obj["metadata"]["name"] == body["metadata"]["name"]]
    if len(matches) != 1:
        raise RenderError(f"{root}: delete patch for {body['kind']}/{body['metadata']['name']} "
                          f"matches {len(matches)} objects")
    return [obj for obj in objects if obj is not matches[0]]


def _apply_labels(label_set: Obj, objects: list[Obj]) -> None:
    unknown = set(label_set) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or label_set.get("includeSelectors"):
        raise Unsupported(f"labels: {sorted(unknown) or 'includeSelectors: true'}")
    pairs = {str(k): str(v) for k, v in label_set["pairs"].items()}
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        template = pod_template(obj)
        if label_set.get("includeTemplates") and template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest or None
    return name, None, digest or None


def _apply_image(image: Obj, objects: list[Obj]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise Unsupported(f"images: {sorted(unknown)}")
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        spec = template.get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            digest = image.get("digest", digest)
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def copy_objects(objects: list[Obj]) -> list[Obj]:
    """A deep copy, so one test's edits (negative controls) never leak into another's."""
    return copy.deepcopy(objects)
