"""The moderation engines' word lists: weighted words and phrases per signal, as Python data.

Signals are not categories: ``scoring.py`` combines them (a violent word plus "I will" plus
"you" makes a threat). Terms are lower case; a phrase's words are separated by one space and
match whole tokens ("self-harm" in a text is the tokens ``self harm``). The lists are small
and deliberately plain; they carry no slurs, so hate relies on group words combined with
dehumanising language or the offensiveness model.
"""

from __future__ import annotations

from typing import Final


def _terms(weight: float, terms: str) -> dict[str, float]:
    return {term.strip(): weight for term in terms.split("|") if term.strip()}


SIGNALS: Final[dict[str, dict[str, float]]] = {
    "profane": {
        **_terms(
            1.0,
            "fuck|fucking|fucked|fucker|fuckers|fck|motherfucker|shit|shitty|bullshit|bitch|"
            "bitches|asshole|assholes|bastard|bastards|cunt|dickhead|prick|twat|wanker|wtf|stfu|"
            "douche|douchebag",
        ),
        **_terms(0.6, "dick|piss|pissed|slut|whore"),
        **_terms(0.4, "crap|damn|hell"),
    },
    "insult": {
        **_terms(
            1.0,
            "idiot|idiots|stupid|moron|morons|dumbass|loser|losers|pathetic|worthless|useless|"
            "scum|imbecile|freak|disgusting|piece of shit|nobody likes you|go to hell|screw you|"
            "hate you|you suck|shut up|shut your mouth|waste of space",
        ),
        **_terms(0.6, "dumb|ugly|trash|incompetent|clown|fool|creep|jerk"),
        **_terms(0.4, "fat|garbage|annoying|lame"),
    },
    "target": _terms(1.0, "you|your|you're|youre|yours|yourself|u|ur|ya|yall|y'all"),
    "first_person": _terms(1.0, "i|i'm|im|me|my|myself|i'll|i've|i'd|ive"),
    "intent": {
        **_terms(
            1.0,
            "i will|i'll|i'm going to|im going to|i am going to|i'm gonna|im gonna|gonna|"
            "going to|i want to|i wanna|i plan to|i'm planning to|i intend to|i'd like to|"
            "let's|lets|i swear",
        ),
        **_terms(0.5, "should|will"),
    },
    "threat": {
        **_terms(
            1.0,
            "you're dead|you are dead|you're going to die|you are going to die|you will die|"
            "watch your back|i know where you live|hunt you down|coming for you|come for you|"
            "you will pay|make you pay|end you|kill all|should all die|better watch out|"
            "sleep with one eye open",
        ),
        **_terms(0.7, "kill yourself|kys|go die"),
    },
    "violence": {
        **_terms(
            1.0,
            "kill|kills|killed|killing|murder|murders|murdered|murdering|shoot|shooting|stab|"
            "stabs|stabbed|stabbing|strangle|strangled|assault|assaulted|torture|tortured|"
            "massacre|slaughter|slaughtered|behead|beheaded|lynch|lynched|rape|raped|bombing|"
            "beat up|beat you|beat him|beat her|punch you|break your|slit your throat",
        ),
        **_terms(0.6, "shot|hurt|choke|punch|punched|attack|attacked|violent|violence|execute"),
        **_terms(0.4, "beat|bomb|die|blood|weapon|gun|fight|hit|dead"),
    },
    "gore": {
        **_terms(
            1.0,
            "gore|gory|guts|entrails|intestines|dismember|dismembered|decapitate|decapitated|"
            "mutilate|mutilated|severed|disembowel|disemboweled|flayed|ripped apart|"
            "blood everywhere|pool of blood|covered in blood|brains out|skull crushed|bled out",
        ),
        **_terms(0.6, "bleeding|corpse|corpses|maggots|rotting flesh"),
    },
    "identity": {
        **_terms(
            1.0,
            "jews|jewish|jew|muslims|muslim|islam|blacks|black people|whites|white people|"
            "asians|mexicans|latinos|hispanics|arabs|immigrants|immigrant|refugees|migrants|"
            "gays|gay|lesbians|lesbian|homosexuals|trans|transgender|trans people|hindus|sikhs|"
            "africans|gypsies|roma|foreigners|disabled people",
        ),
        **_terms(0.6, "christians|christian|asian|women|females|chinese|indians|catholics"),
    },
    "dehumanize": {
        **_terms(
            1.0,
            "vermin|subhuman|subhumans|sub human|parasites|cockroaches|savages|inferior|"
            "go back to|don't belong|dont belong|should be deported|exterminate|extermination|"
            "wipe out|wiped out|gas them|kill all|should all die|should be killed|"
            "are a disease|less than human|infestation",
        ),
        **_terms(0.6, "rats|animals|savage|filth|filthy|invaders|plague|parasite"),
    },
    "self_harm": {
        **_terms(
            1.2,
            "kill myself|killing myself|end my life|take my own life|take my life|"
            "slit my wrists|hang myself|want to die|wanna die|better off dead|"
            "no reason to live|not worth living|end it all",
        ),
        **_terms(
            1.0,
            "suicidal|self harm|selfharm|cut myself|cutting myself|hurt myself|hurting myself|"
            "starve myself|starving myself|kill yourself|kys|slit your wrists",
        ),
        **_terms(0.7, "suicide|overdose|jump off a bridge"),
        **_terms(0.5, "anorexia|bulimia|purging"),
    },
    "instructions": {
        **_terms(
            1.0,
            "how to|how do i|how can i|how do you|best way to|easiest way to|step by step|"
            "instructions|tutorial|guide to|ways to|teach me|show me how",
        ),
        **_terms(0.6, "tips for|recipe for|method"),
    },
    "sexual": {
        **_terms(
            1.0,
            "porn|porno|pornography|nude|nudes|naked|horny|orgasm|penis|vagina|boobs|tits|"
            "pussy|cum|blowjob|handjob|xxx|nsfw|erotic|masturbate|masturbating|have sex|"
            "having sex|intercourse|molest|molested|sexual acts",
        ),
        **_terms(0.7, "cock|onlyfans|rape|raped|sexting"),
        **_terms(0.6, "sex|sexual|slut|whore|sleep with"),
        **_terms(0.5, "sexy|dick"),
    },
    "minor": {
        **_terms(
            1.0,
            "child|children|kid|kids|minors|underage|under age|preteen|toddler|infant|"
            "schoolgirl|schoolboy|young girl|young boy|little girl|little boy|jailbait|"
            "middle school|elementary school",
        ),
        **_terms(0.7, "year old|years old"),
        **_terms(0.6, "minor|teen|teens|teenager|teenagers|baby"),
    },
    "illicit": {
        **_terms(
            1.0,
            "shoplift|shoplifting|steal|stealing|burglary|break into|pick a lock|cocaine|"
            "heroin|meth|methamphetamine|fentanyl|buy drugs|sell drugs|launder|laundering|"
            "money laundering|counterfeit|fraud|scam|phishing|hack into|malware|ransomware|"
            "smuggle|smuggling|fake id|tax evasion|evade taxes|embezzle|stolen credit|"
            "credit card numbers|carding|without getting caught",
        ),
        **_terms(0.6, "hacking|bribe|forge|lsd|mdma|darknet|dark web"),
        **_terms(0.4, "drugs|crack|piracy"),
    },
    "weapon": {
        **_terms(
            1.0,
            "bomb|bombs|pipe bomb|explosive|explosives|grenade|molotov|firearm|rifle|pistol|"
            "assault rifle|ammunition|ghost gun|untraceable gun|silencer|napalm|nerve gas|"
            "sarin|ricin|anthrax|chemical weapon|bioweapon|make a bomb|build a bomb|detonator|"
            "ied|thermite",
        ),
        **_terms(0.6, "gun|guns|ammo|weapon|weapons"),
    },
}
