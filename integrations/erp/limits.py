"""Bounds on what one GraphQL request may ask (beside strawberry's depth, alias and token
limiters): page sizes, and a cost estimate checked before anything runs."""
from __future__ import annotations

from django.conf import settings
from graphql import (FieldNode, FragmentSpreadNode, GraphQLError, InlineFragmentNode, IntValueNode,
                     OperationDefinitionNode, ValidationRule, get_named_type, get_nullable_type, is_list_type)
from graphql.type import GraphQLObjectType

# A nested list (an invoice's lines, a payment's allocations) counts as this many items.
NESTED_LIST_ITEMS = 10
# The items of a page: already counted by the paged field's `first`.
PAGE_ITEMS = ("edges", "entries")


def page_size(first: int) -> int:
    if not 1 <= first <= settings.GRAPHQL_MAX_PAGE:
        raise GraphQLError(f"first: must be 1 to {settings.GRAPHQL_MAX_PAGE}", extensions={"code": "BAD_PAGE_SIZE"})
    return first


class ComplexityLimiter(ValidationRule):
    """Every field costs 1; what is below a paged field costs its page size (`first`, or the
    largest page when it is a variable) times over, below a nested list NESTED_LIST_ITEMS times.
    Fragments are followed (once each per path: a cycle is refused by the spec's own rule)."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args):
        schema = self.context.schema
        root = {"query": schema.query_type, "mutation": schema.mutation_type,
                "subscription": schema.subscription_type}[node.operation.value]
        if root is None:
            return
        cost = self._cost(node.selection_set, root, frozenset())
        if cost > settings.GRAPHQL_MAX_COMPLEXITY:
            self.report_error(GraphQLError(
                f"the query would cost {cost}, more than {settings.GRAPHQL_MAX_COMPLEXITY}: ask for fewer fields "
                f"or smaller pages", [node], extensions={"code": "TOO_COMPLEX"}))

    def _cost(self, selection_set, parent, seen: frozenset) -> int:
        if selection_set is None or not isinstance(parent, GraphQLObjectType):
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = parent
                if selection.type_condition is not None:
                    condition = self.context.schema.get_type(selection.type_condition.name.value) or parent
                total += self._cost(selection.selection_set, condition, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in seen:
                    continue
                condition = self.context.schema.get_type(fragment.type_condition.name.value) or parent
                total += self._cost(fragment.selection_set, condition, seen | {name})
            if total > settings.GRAPHQL_MAX_COMPLEXITY:
                return total  # no need to count further
        return total

    def _field_cost(self, node: FieldNode, parent: GraphQLObjectType, seen: frozenset) -> int:
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 1  # the spec's own rule reports an unknown field
        below = self._cost(node.selection_set, get_named_type(definition.type), seen)
        times = 1
        if "first" in definition.args:
            times = settings.GRAPHQL_MAX_PAGE
            for argument in node.arguments or ():
                if argument.name.value == "first" and isinstance(argument.value, IntValueNode):
                    times = max(1, min(int(argument.value.value), settings.GRAPHQL_MAX_PAGE))
        elif is_list_type(get_nullable_type(definition.type)) and node.name.value not in PAGE_ITEMS:
            times = NESTED_LIST_ITEMS
        return 1 + times * below
