"""Prompts of the LLM operators, in the data's language (Chinese for Chinese data).

In the spirit of Data-Juicer's optimize_{query,response,qa}_mapper and
generate_qa_from_examples_mapper, with the artifact's rule that a rewrite keeps its length. Every
prompt is an instruction plus a body of labelled records ending with the label the model fills
in. A chat model gets them as system and user messages; a base model, which follows patterns
rather than instructions, continues the same text, so its records are few-shot examples and a
blank line or the next record's label ends its answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from autodp.llm import Prompt


@dataclass(frozen=True)
class Texts:
    labels: dict[str, str]  # original, rewrite, question, answer, orig_question, orig_answer
    rewrite: dict[str, str]  # instruction per kind (question | answer | qa); {pct} is the tolerance
    examples: dict[str, list[tuple[str, ...]]]  # few-shot: (original, rewrite) or (q, a, q', a')
    fill: dict[str, str]  # instruction per missing field (question | answer)
    generate: str
    shots_intro: str


_Q1 = ("宝宝发烧38度5怎么办啊\n宝宝两岁了，昨天晚上开始发烧，吃了退烧药还是反反复复的，精神也不太好，需要去医院吗？",
       "宝宝发烧38.5度该怎么办？\n宝宝两岁，昨晚开始发烧，服用退烧药后体温仍反复升高，精神状态也不太好，需要去医院就诊吗？")
_A1 = ("你好，宝宝发烧反复，精神不好的话建议去医院查个血常规，看看是病毒感染还是细菌感染，体温超过38度5可以吃退烧药，"
       "平时多给宝宝喝水，用温水擦擦身子物理降温。",
       "宝宝发热反复且精神欠佳，建议到医院检查血常规，明确是病毒还是细菌感染。体温超过38.5度时可服用退烧药，"
       "平时让宝宝多饮水，并用温水擦拭身体物理降温。")

ZH = Texts(
    labels=dict(original="【原文】", rewrite="【改写】", question="【问题】", answer="【回答】",
                orig_question="【原问题】", orig_answer="【原回答】"),
    rewrite=dict(
        question="请改写医疗问答中的问题：意思不变，表述更清晰、准确、规范，仍能由原回答回答；"
                 "字数与原文相差不超过{pct}%。只输出改写后的问题。",
        answer="请改写医疗问答中的回答：意思和医学事实不变，表述更通顺、专业、准确；"
               "字数与原文相差不超过{pct}%。只输出改写后的回答。",
        qa="请改写医疗问答对：问题表述更清晰规范，回答更通顺、专业、准确，意思和医学事实不变；"
           "问题和回答的字数各自与原文相差不超过{pct}%。按示例的格式输出改写后的【问题】和【回答】。"),
    examples=dict(
        question=[_Q1,
                  ("最近总是失眠是怎么回事\n最近一个月晚上老是睡不着，躺床上翻来覆去的，白天没精神，头也昏昏沉沉的，该怎么调理？",
                   "最近经常失眠是什么原因？\n近一个月晚上难以入睡，躺在床上辗转反侧，白天精神不佳，头脑昏沉，应该如何调理？")],
        answer=[("你好，根据你说的情况，孩子咳嗽有痰，晚上咳得厉害，可能是支气管炎引起的，建议去医院查个血常规，拍个胸片看看，"
                 "如果是细菌感染的话需要用抗生素治疗，平时让孩子多喝水，吃清淡的东西，别吃生冷油腻的，注意保暖，别着凉了。",
                 "根据您描述的情况，孩子咳嗽有痰且夜间加重，可能由支气管炎引起。建议到医院检查血常规并拍摄胸片，"
                 "若确诊为细菌感染，需要在医生指导下使用抗生素治疗。平时让孩子多饮水，饮食清淡，避免生冷油腻食物，注意保暖，防止着凉。"),
                ("高血压病人平时要注意饮食，少吃盐，少吃油腻的东西，多吃蔬菜水果，烟酒最好都戒了，每天坚持锻炼身体，"
                 "比如散步打太极这些，降压药要按时吃，不能自己随便停药，还要经常在家量量血压，有头晕头疼的话要及时去医院。",
                 "高血压患者日常应注意饮食，减少食盐和油腻食物的摄入，多吃新鲜蔬菜和水果，最好戒烟戒酒。每天坚持适量运动，"
                 "如散步、打太极拳等。降压药需按时服用，切勿自行停药，并经常在家自测血压，如出现头晕、头痛应及时就医。")],
        qa=[(_Q1[0], _A1[0], _Q1[1], _A1[1])]),
    fill=dict(question="请参考示例，根据最后一个回答写出患者最可能提出的问题。只输出问题。",
              answer="你是一名医生。请参考示例，为最后一个问题写出专业、准确的回答。只输出回答。"),
    generate="请参考下面的医疗问答示例，写一个新的医疗问答对：问题是患者会提出的真实问题，回答专业、准确，"
             "内容不要与示例重复。按示例的格式输出【问题】和【回答】。",
    shots_intro="以下是医疗问答示例。",
)

EN = Texts(
    labels=dict(original="Original: ", rewrite="Rewritten: ", question="Question: ", answer="Answer: ",
                orig_question="Original question: ", orig_answer="Original answer: "),
    rewrite=dict(
        question="Rewrite the question of a medical QA pair: same meaning, clearer and more precise wording, still "
                 "answered by the original answer; within {pct}% of the original length. Output only the question.",
        answer="Rewrite the answer of a medical QA pair: same meaning and medical facts, more fluent, professional "
               "and precise; within {pct}% of the original length. Output only the answer.",
        qa="Rewrite the medical QA pair: a clearer question, a more fluent, professional and precise answer, same "
           "meaning and facts; each within {pct}% of its original length. Answer in the format of the example."),
    examples=dict(
        question=[("my kid got fever 38.5 what to do, gave him medicine but it keeps coming back",
                   "My child has a 38.5 fever that keeps returning after medicine. What should I do?")],
        answer=[("hi, sounds like a cold, drink lots of water and rest, should be fine in a week, see a doctor if "
                 "fever goes on more than 3 days",
                 "Likely a common cold: drink plenty of water and rest; it should pass within a week. "
                 "See a doctor if the fever lasts over 3 days.")],
        qa=[("my kid got a fever of 38.5 what to do",
             "give fever medicine, lots of water, go to hospital if it doesnt go down",
             "My kid has a fever of 38.5, what to do?",
             "Give a fever reducer and plenty of fluids; see a doctor if it stays high.")]),
    fill=dict(question="Following the examples, write the question a patient most likely asked for the last "
                       "answer. Output only the question.",
              answer="You are a doctor. Following the examples, write a professional, accurate answer to the last "
                     "question. Output only the answer."),
    generate="Following the medical QA examples below, write one new medical QA pair: a realistic patient question "
             "and a professional, accurate answer, not repeating the examples. Use the format of the examples.",
    shots_intro="Medical QA examples.",
)

TEXTS = {"zh": ZH, "en": EN}


def texts(lang: str) -> Texts:
    if lang not in TEXTS:
        raise ValueError(f"no prompts for language {lang!r}; have {sorted(TEXTS)}")
    return TEXTS[lang]


@dataclass(frozen=True)
class Task:
    """A prompt for one row and what ends the model's answer."""
    prompt: Prompt
    stop: tuple[str, ...]


def _task(instruction: str, body: str, next_label: str, chat: bool) -> Task:
    body = body.rstrip(" ")  # a base model continues "Answer:" with " ...": no dangling space token
    if chat:  # an instruct model ends by itself, and may well start by repeating a label
        return Task([{"role": "system", "content": instruction}, {"role": "user", "content": body}], ())
    return Task(f"{instruction}\n\n{body}", (next_label, "\n\n"))


def _records(*records: list[tuple[str, str]]) -> str:
    """Records of (label, text) lines, separated by blank lines."""
    return "\n\n".join("\n".join(f"{label}{text}" for label, text in rec) for rec in records)


def rewrite_task(kind: str, text: str, lang: str, tolerance: float, chat: bool) -> Task:
    """Rewrite a question or an answer; the model writes the text after the rewrite label."""
    t = texts(lang)
    orig, new = t.labels["original"], t.labels["rewrite"]
    body = _records(*([(orig, a), (new, b)] for a, b in t.examples[kind]), [(orig, text), (new, "")])
    return _task(t.rewrite[kind].format(pct=round(tolerance * 100)), body, orig.strip(), chat)


def rewrite_qa_task(question: str, answer: str, lang: str, tolerance: float, chat: bool) -> Task:
    """Rewrite both; the model writes the question, the answer label, then the answer."""
    t = texts(lang)
    lb = t.labels

    def pair(q: str, a: str) -> list[tuple[str, str]]:
        return [(lb["orig_question"], q), (lb["orig_answer"], a)]

    examples = (pair(q, a) + [(lb["question"], q2), (lb["answer"], a2)] for q, a, q2, a2 in t.examples["qa"])
    body = _records(*examples, pair(question, answer) + [(lb["question"], "")])
    return _task(t.rewrite["qa"].format(pct=round(tolerance * 100)), body, lb["orig_question"].strip(), chat)


def fill_task(missing: str, given: str, shots: list[tuple[str, str]], lang: str, chat: bool) -> Task:
    """Write the missing question (from the answer) or answer (from the question), after k shots."""
    t = texts(lang)
    q, a = t.labels["question"], t.labels["answer"]
    if missing == "answer":
        body = _records(*([(q, sq), (a, sa)] for sq, sa in shots), [(q, given), (a, "")])
        return _task(t.fill["answer"], body, q.strip(), chat)
    body = _records(*([(a, sa), (q, sq)] for sq, sa in shots), [(a, given), (q, "")])
    return _task(t.fill["question"], body, a.strip(), chat)


def generate_task(shots: list[tuple[str, str]], lang: str, chat: bool) -> Task:
    """A new pair after k shots: the model writes a question, the answer label, then an answer."""
    t = texts(lang)
    q, a = t.labels["question"], t.labels["answer"]
    body = t.shots_intro + "\n\n" + _records(*([(q, sq), (a, sa)] for sq, sa in shots), [(q, "")])
    # the next record starts with the question label, which the answer label never contains
    return _task(t.generate, body, q.strip(), chat)


def split_pair(text: str, lang: str) -> tuple[str, str] | None:
    """(question, answer) from "question<answer label>answer"; None without the label."""
    labels = texts(lang).labels
    question, sep, answer = text.partition(labels["answer"].strip())
    return (strip_label(question, labels["question"]), answer.strip()) if sep else None


def strip_label(text: str, label: str) -> str:
    """The text without surrounding space and without the label a chat model may repeat first."""
    text = text.strip()
    return text[len(label.strip()):].strip() if text.startswith(label.strip()) else text
