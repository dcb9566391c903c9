"""Write ``comments.csv`` next to this file: a few hundred made-up comments for the demos.

Deterministic (seeded, stdlib only): running it again gives the same bytes. Mostly everyday
comments, with a share the moderation engine should flag (insults, profanity, threats,
harassment, self-harm, sexual remarks), a few empty and very long texts, other languages,
repeated texts under different ids, and quotes, commas and newlines inside fields.
Every person and handle in it is invented.

Usage: python sample_data/make_comments.py
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEED = 20240611
START = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)

EVERYDAY = [
    "This is exactly what I needed today, thank you.",
    "Great video! The part about sourdough starters finally made it click for me.",
    "Does anyone know if this works on the older model too?",
    "I tried this recipe last night and my kids actually ate the vegetables. Miracle.",
    "The audio is a bit quiet in the second half, but otherwise really well made.",
    "Can you do a follow-up on how to store it over winter?",
    "I've been following this channel since 2019 and it keeps getting better.",
    "Honestly I disagree with the conclusion, but the argument was fair.",
    "Where did you get that lamp in the background? It's lovely.",
    "Bookmarking this for the weekend.",
    "My grandmother used to make this exact dish, brought back so many memories.",
    "The traffic on the ring road was a nightmare again this morning.",
    "Is the store open on Sunday or only weekdays?",
    "Ordered on Monday, arrived Wednesday, well packed. Happy with it.",
    "The battery lasts about two days with normal use, which is fine for me.",
    "Step 4 didn't work for me until I restarted the router.",
    "Congrats on 100k subscribers!",
    "Love the new thumbnail style.",
    "Anyone else watching this at 3am instead of sleeping?",
    "I think the answer to question 7 is wrong, it should be 42 not 24.",
    "This bridge has been under construction for three years now.",
    "Thanks for linking the sources in the description, more people should do that.",
    "The colours in the last shot are stunning.",
    "My cat watched this whole video with me. She approves.",
    "Could you share the playlist from the intro?",
    "We went there on holiday last summer, the beach is even nicer in person.",
    "I'm a nurse and this is accurate, good job explaining it simply.",
    "Not sure why this got so many dislikes, seems reasonable to me.",
    "The new update broke dark mode on my phone.",
    "Five stars, would buy again.",
    "The instructions were missing from the box but the diagram online helped.",
    "Such a calm voice, I use these videos to relax after work.",
    "What camera do you use?",
    "The bakery on the corner has the best croissants in town, fight me.",
    "I've read the book twice and the film still surprised me.",
    "Happy birthday to your dad!",
    "Great tips. Number three saved me about an hour a week.",
    "The council should really fix the potholes on Elm Street.",
    "First time commenting, long time listener.",
    "This aged well.",
    "Is there a vegetarian version of this?",
    "I'm learning guitar at 54 and videos like this keep me going.",
    "The subtitles are out of sync by a couple of seconds.",
    "Respectfully, the chart at 4:12 has the axes swapped.",
    "The view from the top was worth every step.",
    "Finally someone explains taxes without making me feel stupid.",
    "Saw them live in Leeds last year, incredible show.",
    "Any plans to restock the medium size?",
    "Good luck on the exam tomorrow everyone!",
    "I didn't expect to cry at a video about a lighthouse, but here we are.",
    "The weather app said sunny and it rained all day, classic.",
    "This deserves way more views.",
    "I just want to say the moderators here do a great job.",
    "Tried it with oat milk, works just as well.",
    "The second guest was much more interesting than the first.",
    "My teacher showed this in class today!",
    "Quick question: does the warranty cover water damage?",
    "Thank you for reading all the comments, it's really nice of you.",
    "Pro tip: soak the beans overnight, it halves the cooking time.",
    "Our library just started lending tools, such a good idea.",
    "The ending felt rushed but I enjoyed the ride.",
    "I'm sharing this with my study group.",
    "The hiking trail was closed, so we took the river path instead.",
    "Really helpful, I was stuck on this for days.",
    "Can confirm, the shortcut works on Linux too.",
    "Lovely to see a small business doing so well.",
    "Which font is that in the title card?",
    "I appreciate the honesty about the sponsorship.",
    "The puppy at the end made my day.",
    "Does this apply to renters or only homeowners?",
]

OPENERS = [
    "Honestly,",
    "Just a thought:",
    "Ok so",
    "Not gonna lie,",
    "As a long-time viewer,",
    "Quick note -",
    "For what it's worth,",
    "Wow.",
    "Hmm,",
    "Agreed!",
]
SUBJECTS = [
    "the editing in this one",
    "the recipe",
    "your explanation of the budget",
    "the new playlist",
    "the second half of the episode",
    "the tutorial",
    "the interview",
    "this whole series",
    "the review of the blender",
    "the map at the start",
    "the garden makeover",
    "the match analysis",
]
VERDICTS = [
    "was really well done",
    "helped me a lot",
    "could be a bit shorter",
    "was spot on",
    "made me laugh out loud",
    "was a bit confusing at first",
    "is underrated",
    "deserves a sequel",
    "was better than I expected",
    "answered all my questions",
]
CLOSERS = ["", "", "", " Thanks!", " Keep it up.", " 👍", " Cheers.", " 🙂", " More please!"]

INSULTS = [
    "You are a complete idiot.",
    "What a pathetic loser, nobody cares about your opinion.",
    "Shut up, you brainless moron.",
    "You're so stupid it hurts to read your comments.",
    "Get lost, you worthless clown.",
    "This is the dumbest take I've ever seen, are you an idiot or just pretending?",
    "Only a braindead fool would post something this ugly.",
    "You're a disgusting excuse for a human being.",
    "Nobody asked, you ugly troll.",
    "Go back to school, dumbass.",
    "Imagine being this much of a clown in public.",
    "You're a pathetic, lying little rat.",
]
PROFANITY = [
    "This is fucking ridiculous.",
    "What the hell is wrong with this shit?",
    "Damn, that was a crap video, total bullshit.",
    "Fuck this update, it broke everything.",
    "Holy shit this is bad.",
    "Stop posting this crap, you piece of shit.",
    "Screw you and your stupid channel.",
    "Who the fuck approved this garbage?",
    "Bloody hell, another useless ad.",
    "This is such bullshit, I want my money back.",
]
THREATS = [
    "I will kill you.",
    "I know where you live, and I'm coming for you.",
    "Keep talking and I'll break your neck.",
    "You'd better watch your back, I will find you.",
    "Say that to my face and I will beat you until you can't stand.",
    "Someone should shoot this guy.",
    "I'm going to burn your house down.",
    "If I see you at the match I will hurt you.",
    "You're dead, you hear me? Dead.",
    "I'll make you regret ever posting this, I swear I will kill you.",
]
HARASSMENT = [
    "Everyone, go to her profile and tell her what a failure she is.",
    "I'm going to keep messaging you until you delete your account.",
    "You're so ugly, no wonder nobody loves you.",
    "Kill yourself, nobody would miss you.",
    "Lol look at this fat loser trying to be relevant.",
    "You should be ashamed to show your face online.",
    "I made three new accounts just to keep reminding you that you're worthless.",
    "Nobody wants you here. Leave and never come back.",
    "People like you should not be allowed to post.",
    "Hey everyone, this is the same idiot who cried on stream last week lmao.",
]
SELF_HARM = [
    "I don't see the point anymore, I want to end it all.",
    "Some days I just want to kill myself.",
    "I've started cutting again and I don't know how to stop.",
    "Does anyone know how many pills it takes? Asking for real.",
    "I feel like everyone would be better off without me.",
    "Thinking about hurting myself tonight.",
]
SEXUAL = [
    "You look so sexy in this video, send me nudes.",
    "Dm me if you want to see something hot 😏",
    "I'd love to get you naked.",
    "Those legs though... I want you in my bed tonight.",
    "Hot singles in your area want to meet you, click my profile.",
    "Show us more skin next time, babe.",
]

FOREIGN = [
    "Merci pour cette vidéo, c'est très clair !",
    "Je ne suis pas d'accord, mais l'argument est intéressant.",
    "Ferme ta gueule, espèce d'abruti.",
    "¡Qué buena receta! La haré este fin de semana.",
    "¿Alguien sabe dónde comprar esto en México?",
    "Eres un idiota y tu canal es una basura.",
    "Danke für die tolle Erklärung, endlich verstehe ich es.",
    "Das Video ist leider viel zu lang.",
    "Halt die Klappe, du Vollidiot.",
    "この動画、とても分かりやすかったです。ありがとうございます！",  # noqa: RUF001
    "音が小さくて聞こえにくいです。",
    "شكرا جزيلا على هذا الشرح الرائع",
    "هل يوجد ترجمة عربية للفيديو؟",
    "Спасибо, очень полезное видео!",
    "Какой же ты идиот, просто удали канал.",
    "Adorei o vídeo, muito bem explicado!",
    "Bellissimo posto, ci sono stato l'anno scorso.",
    "这个视频太有用了，谢谢分享！",  # noqa: RUF001
    "영상 정말 잘 봤습니다. 다음 편도 기대할게요!",
    "बहुत अच्छा वीडियो है, धन्यवाद!",
    "Dit is echt een goed idee, ga ik proberen.",
    "Świetny film, pozdrawiam z Krakowa!",
    "Je vais te retrouver et je vais te tuer.",
]

REPEATED = [
    "First!",
    "Great video, thanks for sharing!",
    "🔥🔥🔥",
    "Check out my channel for FREE gift cards!!! Link in bio",
    "Who's here in 2024?",
    "You are a complete idiot.",
]

TRICKY = [
    "He said \"it's fine\" and then it wasn't. Classic.",
    'The sign literally says "No parking, ever", yet here we are.',
    "Pros:\n- cheap\n- light\nCons:\n- the lid, the handle, and the hinge all broke",
    'Line one.\nLine two, with a comma.\n"Line three" in quotes.',
    'Rating: 4/5, "would recommend", but the delivery, frankly, was slow.',
    "P.S.\n\nI forgot to say thanks, so: thanks.",
    'My favourite quote: "Do or do not, there is no try."',
    'She asked, "Why, though?", and nobody answered.',
    "Recipe: 2 eggs, 200g flour, 1 cup milk,\na pinch of salt.\nMix, rest, fry.",
    'Comma, comma, comma, "quote", newline next\nand done.',
    "=SUM(A1:A3) is what my spreadsheet shows instead of the title, weird.",
    "Tabs\tinside\ttext and a trailing space ",
]

EMPTY = ["", "", "", "   ", ""]

REVIEW_SENTENCES = [
    "I bought this vacuum after my old one finally gave up, after eleven years of service.",
    "Setting it up took about twenty minutes, most of which was spent reading the manual.",
    "The suction is strong on hard floors, and decent, though not amazing, on thick rugs.",
    "The battery lasted around forty minutes on the normal setting in my flat.",
    "Emptying the bin is easy, but fine dust tends to cling to the filter.",
    "Customer service answered my email within a day, which I appreciated.",
    "It is louder than I expected, so the cat now hides whenever I take it out.",
    "The charging dock is compact and fits neatly in the hallway cupboard.",
    "After three months, the brush roll still looks fine, with only some hair wrapped around.",
    "I would have liked a longer warranty given the price.",
    "Overall, I think it is good value, and I would probably buy it again.",
]
RANT_SENTENCES = [
    "You people are the worst, every single one of you.",
    "This is the most idiotic thread I've ever had the misfortune to read.",
    "Shut up, all of you, nobody cares about your stupid opinions.",
    "I swear if the admins don't ban you clowns I will find you myself.",
    "Pathetic, absolutely pathetic, go get a life.",
]
STORY_SENTENCES = [
    "When I was a kid, my grandfather kept bees behind the house.",
    "Every August he would take the frames out, slowly, without gloves.",
    "He said the bees could tell when you were afraid, so I tried very hard not to be.",
    "We would sit on the porch afterwards, eating bread with honey still warm from the comb.",
    "He passed away last spring, and this video brought all of it back.",
    "So, thank you, really, for making it.",
]

FIRST = ["anna", "ben", "carlos", "dee", "emre", "fatima", "gus", "hana", "ivan", "jules"]
SECOND = ["k", "_m", "_the_cook", "_runs", "99", "_uk", "_reads", "2001", "_dev", "_art"]
HANDLES = [
    "quietfox",
    "bikeguy_77",
    "moonlit.reader",
    "TheRealDave",
    "sunny_side_up",
    "pixelpusher",
    "grumpy_neighbour",
    "lena.travels",
    "oldschoolgamer",
    "NightOwl_3",
    "tea_and_toast",
    "marco_polo_jr",
]
TROLLS = ["xX_dark_lord_Xx", "anon4839201", "throwaway_5521"]


def everyday(rng: random.Random) -> str:
    opener, subject = rng.choice(OPENERS), rng.choice(SUBJECTS)
    if opener[-1] in ".!":
        subject = subject[0].upper() + subject[1:]
    return f"{opener} {subject} {rng.choice(VERDICTS)}.{rng.choice(CLOSERS)}"


def long_text(rng: random.Random, sentences: list[str], chars: int) -> str:
    parts: list[str] = []
    while sum(len(part) + 1 for part in parts) < chars:
        paragraph = " ".join(rng.sample(sentences, k=min(len(sentences), 4)))
        parts.append(paragraph)
    return "\n\n".join(parts)


def texts(rng: random.Random) -> list[tuple[str, str]]:
    """(text, author kind) pairs; kind "troll" posts come mostly from a few repeat accounts."""
    rows: list[tuple[str, str]] = [(text, "user") for text in EVERYDAY]
    rows += [(everyday(rng), "user") for _ in range(150)]
    rows += [(text, "user") for text in TRICKY + EMPTY + FOREIGN]
    rows += [(text, "user") for text in REPEATED for _ in range(rng.randint(2, 4))]
    abusive = INSULTS + PROFANITY + THREATS + HARASSMENT + SEXUAL
    rows += [(text, "troll") for text in abusive]
    rows += [(text, "user") for text in SELF_HARM]
    rows += [(text.upper() + "!!", "troll") for text in rng.sample(INSULTS, 3)]
    rows += [
        (long_text(rng, REVIEW_SENTENCES, 4000), "user"),
        (long_text(rng, REVIEW_SENTENCES, 7000), "user"),
        (long_text(rng, STORY_SENTENCES, 3000), "user"),
        (long_text(rng, RANT_SENTENCES, 5000), "troll"),
    ]
    return rows


def author(rng: random.Random, kind: str) -> str:
    if kind == "troll" and rng.random() < 0.7:
        return rng.choice(TROLLS)
    if rng.random() < 0.5:
        return rng.choice(HANDLES)
    return rng.choice(FIRST) + rng.choice(SECOND)


def main() -> None:
    rng = random.Random(SEED)
    rows = texts(rng)
    rng.shuffle(rows)
    minutes = sorted(rng.randrange(14 * 24 * 60) for _ in rows)
    target = Path(__file__).with_name("comments.csv")
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["comment_id", "author", "posted_at", "text"])
        for number, ((text, kind), minute) in enumerate(zip(rows, minutes, strict=True), 1):
            posted = START + timedelta(minutes=minute, seconds=rng.randrange(60))
            stamp = posted.strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow([f"c{number:05d}", author(rng, kind), stamp, text])
    print(f"wrote {len(rows)} comments to {target}")  # noqa: T201


if __name__ == "__main__":
    main()
