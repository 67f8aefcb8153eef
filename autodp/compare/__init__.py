"""task=compare: the paper's final evaluation (Tables 3, 4, 6 and 7). Each arm's training data
fine-tunes the final model, the model answers the test questions, a judge compares two arms'
answers per question in both orders, and reference metrics score every arm against the gold
answers. Flow: arms -> final -> (answers) -> task, which writes the tables."""
