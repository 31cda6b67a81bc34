"""modelyard: a Pulumi blueprint for a production AI model-serving platform on AWS."""

__version__ = "0.1.0"
