"""flatc-generated TFLite metadata schema (see GENERATE.md). Do not edit."""
