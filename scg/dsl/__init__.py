"""The model-building DSL: graphs, inputs, params, samples, costs, math."""
