"""The query cost limit: what an operation would resolve, counted on the document before it runs.

Depth, alias and token limits each bound one dimension; nesting lists multiplies them. The cost of a
selection is the number of fields it would resolve: each field costs 1, plus its selection's cost times
the number of items it can return. A connection's items are its page (`first`, or GRAPHQL_DEFAULT_PAGE_SIZE
when it is omitted); a list without `first` (a generation's media, a media's animations, a model's
inputs) counts as GRAPHQL_DEFAULT_PAGE_SIZE items too. Variables are applied, fragments expanded, and a
subscription is counted per event. An operation above GRAPHQL_MAX_COST is refused before anything runs,
with QUERY_TOO_COSTLY, its cost and the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql.type.definition import GraphQLInterfaceType
from strawberry.extensions import SchemaExtension

QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
PAGE_ARGUMENT = "first"


class _Counter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        default_page: int,
        max_page: int,
        limit: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.default_page = default_page
        self.max_page = max_page
        self.limit = limit

    def selection_cost(self, parent: GraphQLNamedType, selection_set: SelectionSetNode, page: int | None) -> int:
        """The cost of `selection_set` on one `parent`; `page` is the item count of the connection it is in."""
        total = 0
        for field, field_parent in self._fields(parent, selection_set, set()):
            total += self.field_cost(field_parent, field, page)
            if total > self.limit:
                return total  # refused already: no need to count the rest of a huge document
        return total

    def field_cost(self, parent: GraphQLNamedType, node: FieldNode, page: int | None) -> int:
        definition = _field(parent, node.name.value)
        if definition is None or node.selection_set is None:
            return 1  # a leaf, __typename, or a field validation has already refused
        child_page = self._page(node, definition)
        items = 1
        if _is_list(definition):
            items = page if page is not None else self.default_page
        return 1 + items * self.selection_cost(get_named_type(definition.type), node.selection_set, child_page)

    def _page(self, node: FieldNode, definition: GraphQLField) -> int | None:
        """The page a connection field asks for (its lists below hold that many items), or None."""
        if PAGE_ARGUMENT not in definition.args:
            return None
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value == PAGE_ARGUMENT:
                if isinstance(argument.value, IntValueNode):
                    value = argument.value.value
                elif isinstance(argument.value, VariableNode):
                    value = self.variables.get(argument.value.name.value)
        try:
            size = int(value) if value is not None and len(str(value)) <= 10 else self.default_page
        except (TypeError, ValueError):
            size = self.default_page  # the value does not coerce: refused when the operation runs
        # Outside 1..GRAPHQL_MAX_PAGE_SIZE the field is refused without reading a row.
        return size if 1 <= size <= self.max_page else 1

    def _fields(
        self, parent: GraphQLNamedType, selection_set: SelectionSetNode, seen: set[str]
    ) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
        """The fields of a selection set with its fragments expanded, each with the type it is selected on."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, parent
            elif isinstance(selection, InlineFragmentNode):
                on = self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                yield from self._fields(on or parent, selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                on = self.schema.get_type(fragment.type_condition.name.value) or parent
                yield from self._fields(on, fragment.selection_set, seen | {name})


def _field(parent: GraphQLNamedType, name: str) -> GraphQLField | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        return parent.fields.get(name)
    return None


def _is_list(field: GraphQLField) -> bool:
    field_type = field.type
    while isinstance(field_type, GraphQLNonNull | GraphQLList):
        if isinstance(field_type, GraphQLList):
            return True
        field_type = field_type.of_type
    return False


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    default_page: int,
    max_page: int,
    limit: int,
) -> int:
    """The cost of the operation `operation_name` names in `document` (0 when there is none to run)."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return 0
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    values = dict(variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and isinstance(definition.default_value, IntValueNode):
            values[name] = definition.default_value.value
    counter = _Counter(schema, fragments, values, default_page, max_page, limit)
    return counter.selection_cost(root, operation.selection_set, None)


class QueryCostLimiter(SchemaExtension):
    """Refuses, at validation, an operation that costs more than `max_cost` (see the module's docstring)."""

    def __init__(self, *, max_cost: int, default_page: int, max_page: int) -> None:
        self.max_cost = max_cost
        self.default_page = default_page
        self.max_page = max_page

    def on_validate(self) -> Iterator[None]:
        # Runs after the validation cache (listed after it): only a document that validates is counted, and an
        # error set here stops the operation before it executes, as a failed validation does.
        context = self.execution_context
        if context.pre_execution_errors == [] and context.graphql_document is not None:
            cost = operation_cost(
                context.schema._schema,
                context.graphql_document,
                context.operation_name,
                context.variables,
                default_page=self.default_page,
                max_page=self.max_page,
                limit=self.max_cost,
            )
            if cost > self.max_cost:
                context.pre_execution_errors = [too_costly(cost, self.max_cost)]
        yield


def too_costly(cost: int, limit: int) -> GraphQLError:
    # Counting stops once the limit is passed: `cost` is how far it got, a lower bound.
    return GraphQLError(
        f"The operation costs at least {cost}, more than the {limit} allowed (GRAPHQL_MAX_COST): each field "
        "counts once per item of the lists above it; ask for smaller pages or fewer nested lists.",
        extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "maxCost": limit},
    )
