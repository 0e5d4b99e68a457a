"""One module per chapter of the text. Each runs the scratch (numpy) version and the framework
version, and returns a `ChapterResult` that the curriculum stage writes and logs."""
