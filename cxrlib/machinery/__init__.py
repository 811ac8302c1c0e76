"""The book machinery: reading data folders, chapters, parameters, runs, the runner, the site, repro."""
