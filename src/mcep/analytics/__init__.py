"""Analytics: campaign funnels and experiment results, over REST and GraphQL."""
