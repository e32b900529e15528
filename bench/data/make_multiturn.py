"""Write ``bench/data/multiturn.jsonl``: hand-labelled multi-turn conversations with images.

Run from the repository root: ``python bench/data/make_multiturn.py``. The conversations and
their expected models below were written from what a user would expect to answer the
*latest* turn (not from what the router does): a hard request goes to the strong text
model, small talk and simple requests to the small text model, anything that needs to see
an image (one in the latest turn, or one from earlier turns that the latest turn asks
about) to the vision model. Images are tiny generated pictures (a coloured background
with a shape), as PNG or JPEG data URLs: only their presence matters to the router.

In the turn strings ``u:``/``a:``/``s:`` are user/assistant/system turns, and ``<img:NAME>``
in a user turn attaches image NAME (see IMAGES) as an ``image_url`` part.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).with_name("multiturn.jsonl")
HOLDOUT_OUT = Path(__file__).with_name("multiturn-holdout.jsonl")
STRONG = "gpt-5-chat"
SMALL = "nvidia/nvidia-nemotron-nano-9b-v2"
VISION = "nvidia/nemotron-nano-12b-v2-vl"
EXPECTED = {"G": STRONG, "N": SMALL, "V": VISION}

# name: (background, shape colour, format)
IMAGES = {
    "car": ((200, 200, 210), (200, 20, 30), "JPEG"),
    "receipt": ((250, 250, 245), (20, 20, 20), "PNG"),
    "chart": ((255, 255, 255), (30, 90, 200), "PNG"),
    "dog": ((90, 160, 70), (150, 100, 50), "JPEG"),
    "screen": ((30, 30, 40), (220, 60, 60), "PNG"),
    "plant": ((240, 235, 220), (30, 140, 50), "JPEG"),
    "street": ((120, 120, 130), (240, 200, 0), "JPEG"),
    "math": ((255, 255, 255), (10, 10, 120), "PNG"),
    "face": ((210, 180, 160), (60, 40, 30), "JPEG"),
    "room": ((180, 160, 140), (90, 60, 40), "JPEG"),
    "menu": ((250, 240, 220), (120, 30, 30), "PNG"),
    "logo1": ((255, 255, 255), (255, 120, 0), "PNG"),
    "logo2": ((0, 0, 0), (0, 200, 255), "PNG"),
    "logo3": ((240, 240, 240), (120, 0, 160), "PNG"),
    "door": ((200, 190, 170), (0, 90, 160), "JPEG"),
    "board": ((245, 245, 245), (0, 120, 0), "PNG"),
}

# (id, category, expected model, turns)
# fmt: off
CONVERSATIONS: list[tuple[str, str, str, list[str]]] = [
    # --- an image earlier; the latest turn is about something else ------------------------
    ("a01", "earlier_image_unrelated", "N", [
        "u: what's in this picture? <img:car>",
        "a: A red car parked on a quiet street.",
        "u: Thanks! Now write a haiku about autumn"]),
    ("a02", "earlier_image_unrelated", "G", [
        "u: what's in this picture? <img:car>",
        "a: A red car parked on a quiet street.",
        "u: Thanks! Now prove that the square root of 2 is irrational"]),
    ("a03", "earlier_image_unrelated", "G", [
        "u: what's in this picture? <img:car>",
        "a: A red car parked on a quiet street.",
        "u: ok. write a Python function that merges two sorted linked lists"]),
    ("a04", "earlier_image_unrelated", "N", [
        "u: <img:receipt> how much did I spend in total?",
        "a: The total on the receipt is $42.17.",
        "u: what's the capital of Canada?"]),
    ("a05", "earlier_image_unrelated", "G", [
        "u: explain this chart <img:chart>",
        "a: It shows monthly sales rising from January to June, with a dip in April.",
        "u: ok, unrelated: derive the formula for the variance of a binomial distribution"]),
    ("a06", "earlier_image_unrelated", "N", [
        "u: what breed is this dog? <img:dog>",
        "a: It looks like a beagle.",
        "u: haha cute. how's your day going?"]),
    ("a07", "earlier_image_unrelated", "N", [
        "u: what does this error mean? <img:screen>",
        "a: The screenshot shows a permission error: the app cannot write to its config folder.",
        "u: thanks, that fixed it! bye"]),
    ("a08", "earlier_image_unrelated", "N", [
        "u: identify this plant <img:plant>",
        "a: That is a Monstera deliciosa.",
        "u: translate 'thank you very much' into Japanese"]),
    ("a09", "earlier_image_unrelated", "G", [
        "u: <img:street> describe this photo",
        "a: A busy street with a yellow taxi in the middle.",
        "u: Design a rate limiter for an API serving a million users; consider consistency and "
        "failure modes."]),
    ("a10", "earlier_image_unrelated", "N", [
        "u: <img:dog> what is this?",
        "a: A brown dog lying on the grass.",
        "u: tell me a joke"]),
    ("a11", "earlier_image_unrelated", "G", [
        "u: solve the problem in this picture <img:math>",
        "a: The equation is 2x + 3 = 11, so x = 4.",
        "u: different question: what is the worst-case time complexity of quicksort, and why?"]),
    ("a12", "earlier_image_unrelated", "N", [
        "u: which building is this? <img:street>",
        "a: It looks like the Flatiron Building in New York.",
        "u: recommend a good science fiction book"]),
    ("a13", "earlier_image_unrelated", "N", [
        "u: <img:room> what do you think of my new living room?",
        "a: It looks cosy: warm wood tones and plenty of light.",
        "u: thanks. honestly I had a rough day at work"]),
    ("a14", "earlier_image_unrelated", "G", [
        "u: what is this? <img:logo1>",
        "a: An orange circle on a white background, probably a logo.",
        "u: Implement a thread-safe LRU cache in Go and explain how the locking works."]),
    ("a15", "earlier_image_unrelated", "N", [
        "u: read the label please <img:receipt>",
        "a: It says 'Organic flour, 1 lb'.",
        "u: how many ounces are in a pound?"]),
    ("a16", "earlier_image_unrelated", "G", [
        "s: You are a helpful assistant for a data team.",
        "u: <img:chart> what does this dashboard show?",
        "a: Daily active users per region over the last 30 days.",
        "u: Write a SQL query that returns the top 3 salaries per department, handling ties."]),
    ("a17", "earlier_image_unrelated", "N", [
        "u: read the text on this sign <img:street>",
        "a: It says 'No parking 8am-6pm'.",
        "u: what does HTTP stand for?"]),
    ("a18", "earlier_image_unrelated", "N", [
        "u: <img:face> do I look ready for the party?",
        "a: You look great, the dark jacket suits you.",
        "u: thank you! good night"]),
    ("a19", "earlier_image_unrelated", "G", [
        "u: what's in this image <img:board>",
        "a: A whiteboard with a few boxes and arrows drawn in green marker.",
        "u: Analyze the economic causes of the Great Depression in depth."]),
    ("a20", "earlier_image_unrelated", "N", [
        "u: <img:menu> what vegetarian options are there?",
        "a: The mushroom risotto and the grilled vegetable salad.",
        "u: nice. give me a recipe for pancakes"]),
    ("a21", "earlier_image_unrelated", "G", [
        "u: <img:plant> is this plant healthy?",
        "a: Mostly, but a few leaves are yellowing, which suggests overwatering.",
        "u: unrelated, prove by induction that 2^n > n for every natural number n"]),
    ("a22", "earlier_image_unrelated", "N", [
        "u: what is this <img:logo2>",
        "a: A light blue ring on a black background.",
        "u: how do you spell 'necessary'?"]),
    ("a23", "earlier_image_unrelated", "G", [
        "u: <img:screen> what is this screen?",
        "a: It is the Kubernetes dashboard showing a list of pods.",
        "u: My pods keep getting OOMKilled even though the memory limits look fine. Help me "
        "diagnose it step by step."]),
    ("a24", "earlier_image_unrelated", "N", [
        "u: where was this photo taken? <img:street>",
        "a: It looks like Lisbon: the yellow tram is typical of the city.",
        "u: thanks",
        "a: You're welcome!",
        "u: what's a good time of year to visit Portugal?"]),
    ("a25", "earlier_image_unrelated", "N", [
        "u: <img:room> what's the temperature on the thermostat?",
        "a: It reads 30 degrees Celsius.",
        "u: convert 30 Celsius to Fahrenheit"]),
    ("a26", "earlier_image_unrelated", "G", [
        "u: transcribe this whiteboard <img:board>",
        "a: 'Q3 goals: ship v2, hire two engineers, cut latency by half.'",
        "u: Explain the difference between processes and threads in depth, and when each is "
        "the better choice."]),
    ("a27", "earlier_image_unrelated", "G", [
        "u: what's this? <img:logo1>",
        "a: An orange circle on a white background, probably a logo.",
        "u: write a Python function that resizes an image to half its width and height, "
        "keeping the aspect ratio, and explain the interpolation choices"]),
    ("a28", "earlier_image_unrelated", "N", [
        "u: <img:street> describe this photo",
        "a: A narrow street with a yellow tram.",
        "u: what's a good camera for street photography under $1000?"]),
    # --- an image earlier; the latest turn asks about it (no new image) -------------------
    ("b01", "earlier_image_referenced", "V", [
        "u: what's in this picture? <img:car>",
        "a: A car parked on a quiet street.",
        "u: what colour is the car in the photo?"]),
    ("b02", "earlier_image_referenced", "V", [
        "u: <img:street> describe this photo",
        "a: A busy street with a taxi in the middle.",
        "u: zoom in on the bottom left corner, what's there?"]),
    ("b03", "earlier_image_referenced", "V", [
        "u: <img:receipt> what's the total?",
        "a: The total is $42.17.",
        "u: and what was the date on the receipt?"]),
    ("b04", "earlier_image_referenced", "V", [
        "u: explain this chart <img:chart>",
        "a: It shows monthly sales from January to June.",
        "u: which bar in the chart is the tallest?"]),
    ("b05", "earlier_image_referenced", "V", [
        "u: what breed is this dog? <img:dog>",
        "a: It looks like a beagle.",
        "u: how old do you think the dog in the picture is?"]),
    ("b06", "earlier_image_referenced", "V", [
        "u: <img:street> describe this photo",
        "a: A street with shops on both sides.",
        "u: are there any people in the background?"]),
    ("b07", "earlier_image_referenced", "V", [
        "u: what's wrong with this UI? <img:screen>",
        "a: The error banner covers the navigation bar.",
        "u: what font is used in the header of the screenshot?"]),
    ("b08", "earlier_image_referenced", "V", [
        "u: <img:menu> what kind of restaurant is this?",
        "a: An Italian trattoria, judging by the menu.",
        "u: can you read the small text at the top of the image?"]),
    ("b09", "earlier_image_referenced", "V", [
        "u: compare these two logos <img:logo1> <img:logo2>",
        "a: The first is an orange circle on white, the second a blue ring on black.",
        "u: which of the two pictures is more readable at small sizes?"]),
    ("b10", "earlier_image_referenced", "V", [
        "u: is this mushroom edible? <img:plant>",
        "a: It looks like a field mushroom, which is edible, but never eat one based on a photo.",
        "u: look again, the cap has white spots. does that change your answer?"]),
    ("b11", "earlier_image_referenced", "V", [
        "u: <img:room> what do you think of this house?",
        "a: It's a two-storey house with a red door.",
        "u: how many windows does the house in the photo have?"]),
    ("b12", "earlier_image_referenced", "V", [
        "u: what's this plant? <img:plant>",
        "a: A monstera.",
        "u: do the leaves in the picture look healthy, or diseased?"]),
    ("b13", "earlier_image_referenced", "V", [
        "u: <img:street> what is this?",
        "a: A city street at dusk.",
        "u: describe the image again, but in much more detail"]),
    ("b14", "earlier_image_referenced", "V", [
        "u: what does this diagram show? <img:board>",
        "a: A client talking to a server through a load balancer.",
        "u: what's the label on the arrow between the two boxes in the diagram?"]),
    ("b15", "earlier_image_referenced", "V", [
        "u: <img:menu> what is this?",
        "a: A restaurant menu in Portuguese.",
        "u: translate the text in that photo into English"]),
    ("b16", "earlier_image_referenced", "V", [
        "u: <img:street> where is this?",
        "a: Probably a shopping street in Madrid.",
        "u: what's written on the sign on the right side of the picture?"]),
    ("b17", "earlier_image_referenced", "V", [
        "u: <img:face> who is this?",
        "a: I can't identify people, but it's a person in a dark jacket.",
        "u: is the person in the photo smiling?"]),
    ("b18", "earlier_image_referenced", "V", [
        "u: solve the math problem in this picture <img:math>",
        "a: The equation is 2x + 3 = 11, so x = 4.",
        "u: that's wrong, look at the picture again: the exponent is 3"]),
    ("b19", "earlier_image_referenced", "V", [
        "u: how many people are in this photo? <img:street>",
        "a: There are three people.",
        "u: no, you miscounted, there are more than three in it. count again"]),
    ("b20", "earlier_image_referenced", "V", [
        "u: <img:car> what car is this?",
        "a: A red hatchback, probably a Volkswagen Golf.",
        "u: can you read the license plate in the image?"]),
    ("b21", "earlier_image_referenced", "V", [
        "u: <img:face> describe this portrait",
        "a: A smiling person with short dark hair.",
        "u: crop the picture to just the face and tell me the eye colour"]),
    ("b22", "earlier_image_referenced", "V", [
        "u: what's in this photo? <img:dog>",
        "a: A dog wearing a collar, sitting on grass.",
        "u: what colour is the collar in the photo?"]),
    ("b23", "earlier_image_referenced", "V", [
        "u: <img:car> what car is this?",
        "a: A red hatchback.",
        "u: is it a manual or an automatic, can you tell?"]),
    ("b24", "earlier_image_referenced", "V", [
        "u: what's on this menu? <img:menu>",
        "a: Pasta dishes, a risotto, two salads and desserts.",
        "u: how much is the risotto?"]),
    ("b25", "earlier_image_referenced", "V", [
        "u: explain this chart <img:chart>",
        "a: Monthly sales from January to June, rising except for a dip in April.",
        "u: what was the value in April?"]),
    ("b26", "earlier_image_referenced", "V", [
        "u: <img:face> do I look ok for the interview?",
        "a: Yes, the dark jacket looks sharp.",
        "u: what about my hair, is it messy?"]),
    # --- the latest turn carries its own image --------------------------------------------
    ("c01", "latest_image", "V", [
        "u: what's this? <img:logo1>",
        "a: An orange circle logo.",
        "u: and this one? <img:logo2>"]),
    ("c02", "latest_image", "V", [
        "u: <img:car> what's in this picture?",
        "a: A red car.",
        "u: thanks! now write a haiku about this photo <img:street>"]),
    ("c03", "latest_image", "V", [
        "u: what's on this board? <img:board>",
        "a: A few diagrams.",
        "u: prove the theorem written on this whiteboard <img:math>"]),
    ("c04", "latest_image", "V", [
        "u: Prove that there are infinitely many prime numbers.",
        "a: Suppose there were finitely many primes p1..pn; then p1*...*pn + 1 ...",
        "u: great. what's in this picture? <img:dog>"]),
    ("c05", "latest_image", "V", [
        "u: hey, how are you?",
        "a: I'm doing well, thanks! How can I help?",
        "u: look at my new haircut <img:face>"]),
    ("c06", "latest_image", "V", [
        "u: Prove that the square root of 2 is irrational.",
        "a: Assume sqrt(2) = p/q in lowest terms; then p^2 = 2q^2 ...",
        "u: here is my own attempt, is it correct? <img:math>"]),
    ("c07", "latest_image", "V", [
        "u: <img:logo1> what is this?",
        "a: An orange circle.",
        "u: <img:logo2> and this?",
        "a: A blue ring.",
        "u: and the third one? <img:logo3>"]),
    ("c08", "latest_image", "V", [
        "u: what's the total on this receipt? <img:receipt>",
        "a: $42.17.",
        "u: that's wrong, here is a sharper photo <img:receipt>"]),
    ("c09", "latest_image", "V", [
        "u: what's the capital of Peru?",
        "a: Lima.",
        "u: <img:street>"]),
    ("c10", "latest_image", "V", [
        "u: write me a short poem",
        "a: Roses bloom, the river runs, the day is long and full of suns.",
        "u: make it about this <img:plant>"]),
    ("c11", "latest_image", "V", [
        "u: Why does my recursive Python function hit the recursion limit? def f(n): return f(n-1)",
        "a: It has no base case, so it never stops recursing.",
        "u: I added one, but now this is the error I get <img:screen>"]),
    ("c12", "latest_image", "V", [
        "u: hi!",
        "a: Hi! How can I help?",
        "u: what are some fun things to do in Rome?",
        "a: Visit the Colosseum, eat gelato, walk through Trastevere.",
        "u: is this place worth visiting? <img:street>"]),
    # --- text only; the latest turn needs something else than the earlier ones ------------
    ("d01", "text_only", "N", [
        "u: Prove that there are infinitely many prime numbers.",
        "a: Suppose there were finitely many primes; multiply them and add one ...",
        "u: thanks, that's great!"]),
    ("d02", "text_only", "G", [
        "u: hi!",
        "a: Hello! How can I help you today?",
        "u: Prove that the sum of the first n odd numbers is n squared."]),
    ("d03", "text_only", "G", [
        "u: what's the capital of France?",
        "a: Paris.",
        "u: now write a Python function that detects a cycle in a directed graph"]),
    ("d04", "text_only", "N", [
        "u: Derive the gradient of the softmax cross-entropy loss.",
        "a: For logits z and one-hot y, dL/dz = softmax(z) - y ...",
        "u: what's a synonym for quick?"]),
    ("d05", "text_only", "G", [
        "u: tell me a joke",
        "a: Why did the scarecrow win an award? Because he was outstanding in his field.",
        "u: that makes no sense, try again"]),
    ("d06", "text_only", "G", [
        "u: what's 17 times 23?",
        "a: 17 x 23 = 381.",
        "u: are you sure? I got something different"]),
    ("d07", "text_only", "N", [
        "u: Implement Dijkstra's algorithm in Rust with a binary heap.",
        "a: use std::collections::BinaryHeap; ...",
        "u: haha cool, bye"]),
    ("d08", "text_only", "G", [
        "u: how do I boil an egg?",
        "a: Put it in boiling water for 7-9 minutes, then cool it in cold water.",
        "u: now explain in depth the chemistry of how heat denatures the egg proteins"]),
    ("d09", "text_only", "N", [
        "u: Write a legal analysis of whether a non-compete clause is enforceable in California.",
        "a: California Business and Professions Code 16600 voids most non-compete clauses ...",
        "u: ok, what time zone is Tokyo in?"]),
    ("d10", "text_only", "G", [
        "u: good morning",
        "a: Good morning! What can I do for you?",
        "u: Critically evaluate randomized controlled trials versus observational studies for "
        "estimating drug effects."]),
    ("d11", "text_only", "N", [
        "u: Explain quantum entanglement mathematically.",
        "a: For a two-qubit state |psi> = (|00> + |11>)/sqrt(2) ...",
        "u: lol I understood nothing. anyway, recommend me a movie for tonight"]),
    ("d12", "text_only", "G", [
        "u: summarize the plot of Hamlet in one sentence",
        "a: A prince hesitates to avenge his father's murder.",
        "u: your summary missed the main point, redo it"]),
    ("d13", "text_only", "G", [
        "u: how many planets are in the solar system?",
        "a: Eight.",
        "u: now estimate how many golf balls fit in a school bus and explain your reasoning"]),
    ("d14", "text_only", "N", [
        "u: How would you design the database schema for a multi-tenant SaaS billing system?",
        "a: Start with tenants, plans, subscriptions, invoices and usage records ...",
        "u: thank you so much!"]),
    ("d15", "text_only", "V", [
        "s: You are a camera assistant: you see what the user's phone camera sees.",
        "u: hey",
        "a: Hi! What would you like me to look at?",
        "u: how do I look today?"]),
    ("d16", "text_only", "G", [
        "u: what's 2+2?",
        "a: 4.",
        "u: ok now solve x^4 - 5x^2 + 4 = 0 step by step"]),
    ("d17", "text_only", "G", [
        "u: Find the bug: for i in range(len(xs)): xs.remove(xs[i])",
        "a: Removing while iterating skips elements; iterate over a copy instead.",
        "u: still getting the same error"]),
    ("d18", "text_only", "N", [
        "u: write a short birthday message for my coworker Sam",
        "a: Happy birthday, Sam! Wishing you a great year ahead.",
        "u: give me another one, a bit funnier"]),
    ("d19", "text_only", "N", [
        "u: What are the implications of Godel's incompleteness theorems for mathematics?",
        "a: No consistent formal system rich enough for arithmetic can prove all truths ...",
        "u: cool. translate 'good night' into Spanish"]),
    ("d20", "text_only", "V", [
        "s: You are a camera assistant: you see what the user's phone camera sees.",
        "u: hi there",
        "a: Hello! Point your camera at something.",
        "u: what am I holding up to the camera right now?"]),
    # --- several images over several turns ------------------------------------------------
    ("e01", "several_images", "V", [
        "u: what's this? <img:logo1>",
        "a: An orange circle logo.",
        "u: and this? <img:logo2>",
        "a: A blue ring logo.",
        "u: thanks! which of the two logos would work better on a dark website?"]),
    ("e02", "several_images", "G", [
        "u: what's this? <img:logo1>",
        "a: An orange circle logo.",
        "u: and this? <img:logo2>",
        "a: A blue ring logo.",
        "u: ok, unrelated: write a function that reverses a linked list in place and explain "
        "its complexity"]),
    ("e03", "several_images", "N", [
        "u: <img:dog> what breed?",
        "a: A beagle.",
        "u: <img:plant> and what plant is this?",
        "a: A monstera.",
        "u: cool, thanks a lot, have a nice day"]),
    ("e04", "several_images", "V", [
        "u: <img:car> what car is this?",
        "a: A hatchback.",
        "u: <img:street> where is it parked?",
        "a: On a street in Lisbon.",
        "u: and this last one? <img:door>"]),
    ("e05", "several_images", "N", [
        "u: compare these two pictures <img:logo1> <img:logo3>",
        "a: Both are simple round logos; the first is orange, the second purple.",
        "u: what's the capital of Peru?"]),
    ("e06", "several_images", "V", [
        "u: <img:room> how can I make this room brighter?",
        "a: Lighter curtains and a floor lamp in the corner would help.",
        "u: what's the best paint for a bathroom?",
        "a: A satin or semi-gloss paint that resists moisture.",
        "u: what about this wall? <img:door>"]),
    ("e07", "several_images", "V", [
        "u: <img:room> what's this room?",
        "a: A living room.",
        "u: <img:menu> and this?",
        "a: A restaurant menu.",
        "u: in the first picture, what's on the table?"]),
    ("e08", "several_images", "G", [
        "u: <img:board> what's on this whiteboard?",
        "a: A tree data structure.",
        "u: <img:math> and this sheet?",
        "a: Homework about graphs.",
        "u: Prove that every tree with n nodes has exactly n - 1 edges."]),
    ("e09", "several_images", "V", [
        "u: <img:door> what do you think of this door?",
        "a: A classic panelled front door.",
        "u: what's the best wood for an outdoor door?",
        "a: Oak or mahogany resist weather well.",
        "u: how much does a new front door usually cost?",
        "a: Between $500 and $2,000 installed.",
        "u: go back to the first photo: what colour was the door?"]),
    ("e10", "several_images", "N", [
        "u: <img:logo1> thoughts?",
        "a: Clean and simple.",
        "u: <img:logo2> and this one?",
        "a: Bold, works well on dark backgrounds.",
        "u: give me three ideas for a team lunch"]),
]
# fmt: on

# Written after the rule was settled on CONVERSATIONS (which shaped it: see
# bench/data/README.md), and measured without changes: a check on unseen phrasing.
# fmt: off
HOLDOUT: list[tuple[str, str, str, list[str]]] = [
    ("h01", "earlier_image_unrelated", "N", [
        "u: can you split this bill between 3 people? <img:receipt>",
        "a: Each person pays $14.06.",
        "u: great, thanks! what's a normal tip percentage in the US?"]),
    ("h02", "earlier_image_unrelated", "G", [
        "u: <img:chart> what trend do you see here?",
        "a: Revenue grows about 5% a month.",
        "u: Write a Python script that fits an exponential curve to monthly data with "
        "scipy and explain how to judge the quality of the fit."]),
    ("h03", "earlier_image_unrelated", "G", [
        "u: why is my build failing? <img:screen>",
        "a: The log shows a missing dependency: libssl.",
        "u: ok I installed it. unrelated: explain how the TLS 1.3 handshake works in detail"]),
    ("h04", "earlier_image_unrelated", "N", [
        "u: <img:dog> is my dog overweight?",
        "a: He looks a bit heavy around the middle.",
        "u: lol he loves treats. have a good one!"]),
    ("h05", "earlier_image_unrelated", "N", [
        "u: why are the leaves turning brown? <img:plant>",
        "a: Probably too much direct sun.",
        "u: what's the difference between a fern and a moss?"]),
    ("h06", "earlier_image_unrelated", "N", [
        "u: <img:street> what city is this?",
        "a: It looks like Amsterdam.",
        "u: how do you say 'where is the train station' in Dutch?"]),
    ("h07", "earlier_image_unrelated", "G", [
        "u: check my homework <img:math>",
        "a: Problem 2 is wrong: the derivative of x^3 is 3x^2.",
        "u: thanks. now prove that the derivative of sin x is cos x from first principles"]),
    ("h08", "earlier_image_unrelated", "N", [
        "u: <img:menu> what's the cheapest dish here?",
        "a: The soup of the day, at $6.",
        "u: recommend a wine that goes with mushroom soup"]),
    ("h09", "earlier_image_unrelated", "G", [
        "u: what's this architecture? <img:board>",
        "a: Three services behind an API gateway.",
        "u: Compare event sourcing with CRUD for an order management system; discuss "
        "consistency and failure recovery."]),
    ("h10", "earlier_image_unrelated", "N", [
        "u: <img:face> do I look tired?",
        "a: A little; maybe get some rest tonight.",
        "u: any tips for falling asleep faster?"]),
    ("h11", "earlier_image_referenced", "V", [
        "u: <img:receipt> total?",
        "a: $42.17.",
        "u: what's the name of the shop printed on the receipt?"]),
    ("h12", "earlier_image_referenced", "V", [
        "u: what does this show? <img:chart>",
        "a: Sales by region for 2025.",
        "u: which region is shown in green?"]),
    ("h13", "earlier_image_referenced", "V", [
        "u: <img:screen> what app is this?",
        "a: A music player.",
        "u: what song is playing in the screenshot?"]),
    ("h14", "earlier_image_referenced", "V", [
        "u: describe the scene <img:street>",
        "a: A square with a fountain and a few cafes.",
        "u: is it day or night in the photo?"]),
    ("h15", "earlier_image_referenced", "V", [
        "u: <img:dog> what's this?",
        "a: A dog playing in a garden.",
        "u: what's in its mouth?"]),
    ("h16", "earlier_image_referenced", "V", [
        "u: read this for me <img:board>",
        "a: It lists three tasks for the week.",
        "u: what's the second item on the whiteboard?"]),
    ("h17", "earlier_image_referenced", "V", [
        "u: <img:face> how do I look?",
        "a: Sharp! The blue shirt suits you.",
        "u: does the shirt look too casual for a job interview?"]),
    ("h18", "earlier_image_referenced", "V", [
        "u: what model is this? <img:car>",
        "a: A compact hatchback.",
        "u: look closer at the badge on the back, which brand is it?"]),
    ("h19", "earlier_image_referenced", "V", [
        "u: <img:room> how is my room?",
        "a: Tidy and bright.",
        "u: what's hanging on the wall above the bed?"]),
    ("h20", "earlier_image_referenced", "V", [
        "u: translate this menu <img:menu>",
        "a: Soup of the day, bread basket, grilled fish.",
        "u: you skipped the desserts, translate those too"]),
    ("h21", "latest_image", "V", [
        "u: explain recursion",
        "a: A function that calls itself on a smaller input until a base case.",
        "u: like this? <img:board>"]),
    ("h22", "latest_image", "V", [
        "u: <img:dog> what breed is this?",
        "a: Hard to tell, the photo is blurry.",
        "u: here's a better picture <img:dog>"]),
    ("h23", "latest_image", "V", [
        "u: hi",
        "a: Hello! How can I help?",
        "u: <img:receipt> can you add these up?"]),
    ("h24", "several_images", "V", [
        "u: <img:logo1> logo idea one",
        "a: A bold orange circle.",
        "u: <img:logo2> idea two",
        "a: A blue ring on black.",
        "u: the first one, is its orange too bright?"]),
    ("h25", "several_images", "N", [
        "u: <img:car> nice car huh",
        "a: Very nice!",
        "u: <img:door> and my new front door",
        "a: Lovely colour.",
        "u: ok forget the pictures. write a haiku about rain"]),
    ("h26", "several_images", "G", [
        "u: <img:room> my office",
        "a: Looks productive.",
        "u: <img:face> and me at my desk",
        "a: Looking focused!",
        "u: prove that there is no largest prime number"]),
    ("h27", "text_only", "G", [
        "u: what's the boiling point of water?",
        "a: 100 degrees Celsius at sea level.",
        "u: derive the Clausius-Clapeyron equation and use it to estimate the boiling "
        "point at 3000 m altitude"]),
    ("h28", "text_only", "N", [
        "u: Write a merge sort in C with a small test harness.",
        "a: #include <stdio.h> ... void merge_sort(int *a, int n) { ... }",
        "u: thanks!! you're awesome"]),
    ("h29", "text_only", "N", [
        "u: tell me about the French revolution in depth",
        "a: The French Revolution (1789-1799) transformed France's political order ...",
        "u: in one sentence, what year did it start?"]),
    ("h30", "text_only", "G", [
        "u: good evening",
        "a: Good evening! What can I do for you?",
        "u: Design a distributed cache with consistent hashing and explain rebalancing "
        "when a node fails."]),
]
# fmt: on

IMG = re.compile(r"<img:(\w+)>")


def data_url(name: str) -> str:
    """A 48x32 picture: the background with a shape, as a data URL."""
    background, colour, fmt = IMAGES[name]
    img = Image.new("RGB", (48, 32), background)
    draw = ImageDraw.Draw(img)
    draw.ellipse((12, 6, 36, 26), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=80) if fmt == "JPEG" else img.save(buf, format=fmt)
    mime = "jpeg" if fmt == "JPEG" else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def message(line: str) -> dict[str, object]:
    role = {"u": "user", "a": "assistant", "s": "system"}[line[0]]
    text = line[2:].strip()
    names = IMG.findall(text)
    if not names:
        return {"role": role, "content": text}
    words = IMG.sub("", text).strip()
    parts: list[dict[str, object]] = [{"type": "text", "text": words}] if words else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(n)}} for n in names]
    return {"role": role, "content": parts}


def write(path: Path, conversations: list[tuple[str, str, str, list[str]]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for cid, category, expected, turns in conversations:
            row = {
                "id": f"mt-{cid}",
                "category": category,
                "messages": [message(t) for t in turns],
                "expected_model": EXPECTED[expected],
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(conversations)} conversations to {path}")


def main() -> None:
    write(OUT, CONVERSATIONS)
    write(HOLDOUT_OUT, HOLDOUT)


if __name__ == "__main__":
    main()
