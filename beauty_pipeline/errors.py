"""One error type for every input the pipeline refuses, so callers and the UI catch one thing."""


class PipelineError(ValueError):
    """A bad input or setting; the message is one line: the input, what is wrong, what to do."""
