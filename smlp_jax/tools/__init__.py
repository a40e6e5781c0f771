"""Small command-line tools: data preparation, model summaries, prediction."""
