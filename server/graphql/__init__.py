"""The GraphQL layer: types and thin resolvers over the service layer."""
