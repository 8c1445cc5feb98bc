"""The gateway's API as models: the invocation request (its record built from the served
model's signature), the answer and the error body; the OpenAPI document at ``/openapi.json``
is generated from them, so it describes what the code parses and returns.

The request parser (``lib/serving/requests.py``) stays hand-written, for its messages and its
limits on hostile bodies; the tests hold the two together (every body it accepts validates
against ``request_model``, and bodies it refuses for their shape do not). The answer is built
through ``InvocationResponse``, so the document cannot describe another answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from pydantic.json_schema import models_json_schema

SIGNATURE_TYPES: dict[str, Any] = {
    "long": int,
    "integer": int,
    "double": float,
    "float": float,
    "string": str,
    "boolean": bool,
}


class InvocationResponse(BaseModel):
    """What the gateway answers: Databricks' ``predictions``, the served entity that scored
    the request, and for each row whether its online lookup missed."""

    predictions: list[float] = Field(description="one probability per row, in request order")
    served_model_name: str = Field(
        description="the served entity that scored the request (also the served-model-name header)"
    )
    lookup_missed: list[bool] = Field(
        description="per row: true when the online store held no feature row for the row's "
        "key within the lookback in at least one feature table, so the model scored that "
        "table's defaults (an unknown user, or one not seen lately): treat the score with care"
    )
    lookup_missed_tables: list[list[str]] = Field(
        description="per row: the feature tables whose lookup missed (empty when none)"
    )


class ErrorResponse(BaseModel):
    """Every refusal: a Databricks-style error code and a message naming the problem."""

    error_code: str = Field(
        description="e.g. BAD_REQUEST, UNAUTHENTICATED, RESOURCE_DOES_NOT_EXIST, "
        "REQUEST_TOO_LARGE, TEMPORARILY_UNAVAILABLE"
    )
    message: str


def record_model(key_types: Mapping[str, str], overridable: Mapping[str, str]) -> type[BaseModel]:
    """One request row: the entity keys (required) and any model input to override (optional;
    null means "look it up")."""
    fields: dict[str, Any] = {
        name: (SIGNATURE_TYPES.get(kind, str), Field(description=f"entity key ({kind})"))
        for name, kind in key_types.items()
    }
    for name, kind in overridable.items():
        if name in fields:
            continue
        fields[name] = (
            SIGNATURE_TYPES.get(kind, str) | None,
            Field(None, description=f"optional override of the looked-up {name} ({kind})"),
        )
    return create_model("InvocationRecord", __config__=ConfigDict(extra="forbid"), **fields)


def request_model(record: type[BaseModel], max_rows: int) -> type[RootModel]:
    """The four Databricks invocation formats, each with at most ``max_rows`` rows."""
    rows = Field(min_length=1, max_length=max_rows)
    params = Field(None, description="accepted and ignored, as MLflow's scoring server does")
    forbid = ConfigDict(extra="forbid")
    DataframeRecords, InputsRecords = (
        create_model(
            name, __config__=forbid, **{key: (list[record], rows), "params": (dict | None, params)}
        )
        for name, key in (("DataframeRecords", "dataframe_records"), ("InputsRecords", "inputs"))
    )
    Split = create_model(
        "Split",
        __config__=forbid,
        columns=(list[str], Field(description="distinct column names")),
        data=(list[list[Any]], rows),
    )
    DataframeSplit = create_model(
        "DataframeSplit",
        __config__=forbid,
        dataframe_split=(Split, ...),
        params=(dict | None, params),
    )
    InputsColumns = create_model(
        "InputsColumns",
        __config__=forbid,
        inputs=(dict[str, list[Any]], Field(description="column name -> values, equal lengths")),
        params=(dict | None, params),
    )

    class InvocationRequest(
        RootModel[DataframeRecords | DataframeSplit | InputsRecords | InputsColumns]  # type: ignore[valid-type]
    ):
        """A scoring request in one of Databricks Model Serving's formats."""

    return InvocationRequest


ERRORS = {
    "400": "a malformed request, an unknown column, a wrong type (the message names it)",
    "401": "missing or wrong bearer token (when the gateway has one)",
    "404": "no such endpoint on this gateway",
    "413": "too many rows, or a body over the size limit",
    "503": "not ready: the models are loading, or the online store is empty",
}


def openapi_document(
    *,
    endpoint: str,
    title: str,
    description: str,
    request: type[RootModel],
    token_required: bool,
    version: str,
) -> dict[str, Any]:
    """OpenAPI 3.1 for the gateway's scoring, health and discovery paths."""
    _, definitions = models_json_schema(
        [
            (request, "validation"),
            (InvocationResponse, "serialization"),
            (ErrorResponse, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas = definitions.get("$defs", {})

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_body(schema: dict[str, Any], what: str) -> dict[str, Any]:
        return {"description": what, "content": {"application/json": {"schema": schema}}}

    errors = {code: json_body(ref("ErrorResponse"), what) for code, what in ERRORS.items()}
    security: list[dict[str, list[str]]] = [{"bearer": []}] if token_required else []
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": {
            f"/serving-endpoints/{endpoint}/invocations": {
                "post": {
                    "operationId": "invoke",
                    "summary": f"Score rows with {endpoint}",
                    "security": security,
                    "parameters": [
                        {
                            "name": "X-Request-Id",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "routes the request deterministically by its hash",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref(request.__name__)}},
                    },
                    "responses": {
                        "200": json_body(ref("InvocationResponse"), "one score per row"),
                        **errors,
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "the process is up (no token needed)",
                    "responses": {"200": {"description": '{"status": "ok"}'}},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "the served entities and their traffic, once loaded",
                    "security": security,
                    "responses": {"200": {"description": "ready"}, "503": errors["503"]},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "security": security,
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {"schemas": schemas},
    }
    if token_required:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document
