"""Which of an agent's messages answer the customer, and which only hold the line.

Agents answer in a few messages: "您好，我是小李，请稍等，我帮您查一下。", then the answer, then
"还有什么可以帮您？". Learned as the answer to the customer's question, the first would have the bot
tell the next customer to wait as Xiao Li, and the last would answer nothing. So a run of agent
messages is learned as the messages that say something, and a message made only of greetings,
introductions, holding and closing phrases, or questions for the customer's order number or email ("请提供一下您的
订单号", which the next customer could give the bot to no use), says nothing. A message is never cut inside a sentence, nor
after its first sentence that says something: "Your refund left today. Anything else?" is learned whole,
since a rule that cut clauses out of answers would also cut "If it has not arrived in 5 days, please wait
another day" in half; only whole sentences before that one go ("Hi, I'm Anna. Thanks for waiting!").

The customer's side is read more narrowly: what a customer types while an agent looks ("ok", "在吗？",
a phone number to call back on) is passed over when finding the question an answer answers, but a
customer asks in the words agents hold the line with ("还有其他颜色吗", "please hold my order").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from dialogues.redact import redact
from retrieval.text import model_text

# Not what the customer is asked to look at or check ("请查看一下邮箱", "您看看邮箱", "去看看订单"), which answers: an agent's
# own looking is "我看看", "帮您查一下".
_NOT_THE_CUSTOMERS = r"(?<!请)(?<!(?<![帮为给])[您你])(?<!去)"
# 有什么 offering help ("有什么可以帮您", "有什么需要吗", "有什么事吗", Hong Kong's 有咩可以幫到你), not an answer starting with
# it ("有什么尺码都可以换", "有什么都能退").
_OFFERS_HELP = r"有(?:什么|咩)(?=(?:我|我们|这边)?(?:可以|能够?)?(?:帮|为(?:您|你)|效劳)|需要|事|问题|疑问)"
# What holds the line or closes it, in English and (Simplified) Chinese.
_HOLDING = re.compile(
    r"\b(?:one|a|just a) (?:moment|sec|second|minute)\b(?!\s+(?!please\b)[a-z])|\bplease (?:wait|hold(?: on)?)\b|\bhold on\b"
    r"|\bbear with me\b|\blet me (?:check|look|see|find|have a look)\b|\bi(?:['’]ll| will) (?:check|look|find out)\b"
    r"|\bwhile i (?:check|look)\b|\b(?:checking|look into|looking (?:into|at))\b|\bgive me (?:a|a few|a couple of) (?:moments?|minutes?|secs?|seconds?)\b"
    r"|\bthanks? (?:you )?for (?:waiting|your patience|contacting|reaching out)\b|\bsorry (?:for|about) (?:the|your) (?:wait|delay)\b"
    r"|\bsorry to keep you waiting\b|\b(?:is there )?anything else(?: (?:i|we) can (?:help|assist|do)(?: you)?(?: with| for you)?)?\b"
    r"|\bhow (?:can|may) i (?:help|assist)\b|\bwhat can i do for you\b"
    r"|\b(?:happy|glad) to help\b|\bhave a (?:great|good|nice) day\b|\byou(?:['’]re| are) welcome\b"
    r"|(?:请您?|麻烦(?:您|你)?)?(?:稍等|稍候)(?:片刻|一下下?|下|一会儿?|几分钟)?(?![再才后然])[哦哈呢呀]?"  # not "请稍等一下再付款"
    rf"|等一下|等一等|等等|{_NOT_THE_CUSTOMERS}(?:我这边|我这里|这边)?(?:帮您|帮你|为您|给您)?(?:查询|查看|查)一下"
    r"|(?:我这边|我这里|这边)?(?:帮您|帮你|为您|给您)(?:登记|反馈|确认|核实|处理|记录)(?:一下|下)|确认下"
    rf"|{_NOT_THE_CUSTOMERS}(?<!查)看一下|{_NOT_THE_CUSTOMERS}(?:看看|核实一下|确认一下)|帮您查|帮你查|为您查|给您查|正在查|正在为您|马上为您"
    r"|正在(?:处理|跟进|核实|核查|确认)|(?:处理|跟进|核实|查)紧"  # and Hong Kong's 處理緊, 跟進緊: being handled
    rf"|{_NOT_THE_CUSTOMERS}睇(?:下|睇|一下)|等我(?:查|睇|看)(?:一查|一睇|下|一下)|跟进(?:一下|下)"  # Cantonese: 我幫你睇下, 等我查一查
    rf"|久等|(?:感谢|谢谢|多谢)(?:您|你)?[的嘅]?耐心(?:等待|等候)?|(?:请(?:您|你)?)?耐心等(?:待|候)|耐心|请问|{_OFFERS_HELP}|其他问题|其它问题|可以帮您|可以帮你|能帮您|帮到(?:您|你)"
    r"|为您服务|不客气|祝(?:您|你)有(?:美好|愉快)的一天|祝(?:您|你)(?:生活|购物|工作|周末|节日|假期)?(?:愉快|顺利|开心)?|很高兴为您|感谢您的咨询"
)
# What a customer says while waiting for an answer: greetings, acknowledgements, nudges, goodbyes, and asking for a
# person again (the agent's answer is to what they asked, not to "are you there?" nor to "转人工").
_ACKS = (r"(?:hi|hello|hey)(?: there)?|(?:is )?any(?:one|body)(?: (?:there|here))?"
         r"|(?:客服|人工|有人|人|你|您)?还?在[吗么嘛不]|有人吗|(?:客服|人)呢|(?:怎么)?还?没(?:有)?人(?:回复?|理)?(?:我|吗)?"
         # and the answer awaited (怎么还没回复, 还没回我吗), or hurried (催一下)
         r"|(?:怎么)?还没(?:有)?回复?我?吗?|催(?:一下|下)?"
         # and in Hong Kong's Cantonese: 有冇人呀, 喺唔喺度, 仲喺度嗎, 點解冇人理我, 仲未有人覆
         r"|有冇人(?:喺度)?[呀啊吖]?|(?:客服|你)?仲?喺(?:唔喺)?度[吗嘛呀啊]?|(?:点解|仲)?(?:冇|未有)人(?:覆|回复?|理)?(?:我|吗)?"
         r"|(?:are )?(?:you|u) (?:still )?(?:there|here)|(?:i(?:['’]m| am) )?(?:still )?(?:here|there|waiting)|ping|hm++"
         r"|i(?:['’]ll| will) wait|take your time|bye(?: bye)?|goodbye|喂|在(?:不在)?|我?还在等?|等[了咗]?(?:好久|很久|半天|好耐)了?"
         r"|(?:好的)?我等(?:你|您)|(?:再见|拜拜|再会|下次见|回头见)[啦喇咯呀]?|(?:那)?(?:先|就)这样(?:吧|啦|了)?"
         # greetings as Taiwan (早安, 午安, 晚安) and Hong Kong (早晨: good morning) say them, and with a Chinese particle
         r"|(?:您好|你好|哈喽|哈罗|哈啰|嗨|早上好|下午好|晚上好|早安|午安|晚安|早晨)[呀啊哦]?|(?:hello|hi|bye)[呀啊啦喇]"
         r"|good (?:morning|afternoon|evening)|亲(?:爱的)?"
         # and in Pinyin: ni hao, zai ma (在吗), you ren ma (有人吗), zai jian, bai bai
         r"|(?:ni|nin) ?hao|zai ?(?:ma|bu ?zai)|you ?ren ?(?:ma|zai ?ma)|zai ?jian|bai ?bai"
         r"|(?:please )?hurry(?: up)?(?: please)?|asap|(?:麻烦|请)?(?:快点|快一点|尽快)")
# Of those, asking for a person.
_PLEASE = r"(?: (?:please|pls|plz|now))*"  # "real person pls", "human NOW"
_FOR_A_PERSON = (r"(?:(?:i )?(?:want|need|would like|wanna|can i|could i)(?: to)? )?(?:talk|speak|chat)(?: to| with) (?:a |an )?"
                 rf"(?:real |live )?(?:human|person|agent|someone|somebody|manager|operator){_PLEASE}"
                 r"|(?:(?:i )?(?:want|need|would like) |(?:get|give) me |connect me (?:to|with) )?(?:a |an )?(?:real |live )?"
                 rf"(?:human|person|agent|representative|operator){_PLEASE}"
                 r"|(?:我要|我想|我需要)?(?:找|揾|叫|要|请|快)?(?:帮我|给我)?(?:转接?|接)?(?:一下|下)?个?(?:人工|真人)(?:客服|服务)?"
                 r"|(?:我要|我想)?(?:[找揾]|(?:请|麻烦)?(?:帮我)?转接?)?客服"  # and being put through to one: 转客服, 请帮我转接客服
                 # talking with one (我想同真人讲, 我想同客服讲: Hong Kong's 同 for 跟), or asking whether there is one (有冇真人, 有真人吗)
                 r"|(?:我要|我想|我需要)?(?:同|跟|和)(?:人工|真人|客服)(?:客服)?(?:讲|说|聊|倾)(?:下|一下)?(?:嘢|偈)?"
                 r"|有(?:冇|没有)(?:人工|真人)(?:客服)?[呀啊吖]?|有(?:人工|真人)(?:客服)?[吗么嘛]"
                 # and in Pinyin, typed without a Chinese input method: zhuan ren gong (转人工), rengong kefu, zhen ren
                 r"|(?:wo ?(?:yao|xiang) ?)?(?:zhuan ?(?:jie ?)?)?(?:(?:ren ?gong|zhen ?ren)(?: ?ke ?fu)?|ke ?fu)")
# And the acknowledgements and thanks: what a customer says to an answer, asking nothing more.
# Dropping what they asked: no miss, nor a question; while an action waits for an answer, no answer either.
_DROPS = r"never ?mind|nvm|no worries|forget it|算了吧?|算(?:数)?[啦喇]|唔(?:使|洗)[喇啦]?"  # and Hong Kong's 算啦, 唔使喇
_OKS = (r"ok(?:ay|ie|i|k)?|alright|sure|great|cool|perfect|cheers|no problem|np|got it|gotcha|understood|sounds good"
        r"|all good|(?:thanks?(?: you)?|thx|tks|tq)(?: so much| very much| a lot)?|ty|(?:many|much) thanks"
        r"|(?:thanks?(?: you)?|thx|tks) for (?:your|the) (?:help|reply|quick reply)|appreciated?(?: it)?"
        # as Hong Kong's and Singapore's offices write it: "noted", "noted with thanks", "well received"
        r"|noted(?: with (?:thanks|thx|tks))?|(?:well )?received"
        r"|(?:ok(?:ay)?|thanks?|thx) ?(?:la|lah|lor|啦|喇)"  # as Hong Kong writes them in English: "ok la", "thx啦"
        rf"|{_DROPS}"
        # and with the particle that softens them (好啦, 收到了, 没问题啦; Hong Kong's 好喇, 好啰, ok喇), or a shop's "dear"
        # (好的亲, as online shops' customers write it); 嗯 as a Pinyin keyboard's first "en" gives it, 恩 (恩恩, 嗯呢)
        r"|好[的嘅][呢哦呀哈亲]?|好[嘞勒啦喇咯啰呀啊吖]?|好[滴哒]|(?:那)?好吧|[嗯恩]++[呐哪呢]?|[哦噢]++|收到[了啦喇]?|[没冇]问题[啦喇]?"
        r"|明白(?:了|晒|啦|喇)?|了解了?|(?:知道|晓得|懂)[了啦咗喇]|ok[的了啦喇]|麻烦(?:您|你)?了|辛苦(?:您|你)?了"
        # thanks, and very much so (非常感谢, 太感谢了), as Hong Kong says it too (多谢你, 唔该晒你: 晒, often typed 哂), in
        # two characters (谢了), in Taiwan's and Hong Kong's 感恩, and as typed with digits (3q: "san-Q", thank you)
        r"|(?:非常|十分|万分|太|真的|真是)?(?:谢谢(?:您|你们?|啦|了|亲|客服|您了)?|感谢(?:您|你)?了?)|谢[啦了]|感恩(?:您|你)?|3q"
        r"|多谢[晒哂]?(?:您|你)?|唔该(?:[晒哂]|你|[晒哂]你)?"
        # and in Pinyin, typed without a Chinese input method: xie xie (谢谢), hao de (好的), shou dao (收到), ming bai le
        r"|(?:xie ?xie|duo ?xie|gan ?xie)(?: ?(?:ni|nin))?|hao(?: ?(?:de|ba|la|le|ya|a))?|shou ?dao(?: ?le)?"
        r"|ming ?bai(?: ?le)?|zhi ?dao ?le|mei ?(?:wen ?ti|shi ?le|shi)")
# What a customer sent that the bot cannot read (a picture, a voice message), as a platform channel records it in
# the transcript for the agent who has the conversation (bot/channels/wecom.py): per message type, per language.
SENT: dict[str, dict[str, str]] = {
    "image": {"en": "[picture]", "zh": "[图片]"}, "voice": {"en": "[voice message]", "zh": "[语音]"},
    "video": {"en": "[video]", "zh": "[视频]"}, "file": {"en": "[file]", "zh": "[文件]"},
    "location": {"en": "[location]", "zh": "[位置]"}, "link": {"en": "[link]", "zh": "[链接]"},
    "mention": {"en": "[mentioned the bot]", "zh": "[提到了机器人]"},  # on Slack, the bot's name alone
}
# What the store keeps of a customer's message they deleted on the platform (Store.replace_message).
DELETED = "[deleted]"
SENT_TEXTS = frozenset(text for texts in SENT.values() for text in texts.values()) | {DELETED}
_CONTACT = re.compile(r"\[(?:phone|email|id)\]")  # what redaction leaves of contact details
_CONTACT_WORDS = re.compile(  # what a customer says around them: "my number is", "我的手机号是"
    r"(?:(?:my|the|is|at|me|call|reach|contact|phone|mobile|cell|tel|number|no|email|e-mail|mail|id|whatsapp|wechat"
    r"|我的|我|手机号?码?|电话号?码?|联系方式|身份证号?码?|邮箱|微信号?|号码|是|为)\s*)*")


# Emoji, punctuation and other signs, and a letter alone among them (a kaomoji's: see _only). Alone on both
# sides (a Chinese character before it aside: "好的ヽ(°〇°)ﾉ"): the last letter of a word ("thanks" as "thank"
# and "s") would give a clause two readings a word, and a clause that is not one would take time in two to
# the power of its words to refuse.
_SIGNS = r"(?:[\W_]|(?<![^\W_\u4e00-\u9fff])[^\W\d_\u4e00-\u9fff](?![^\W_]))*"


def _only(words: str) -> str:
    """A clause made only of ``words``, emoji and signs between them ("ok 👍", "好的 (｡･ω･｡)"), or of an emoji
    or a sign alone. Two letters in a row of any script, a digit or a Chinese character are no sign ("환불해
    주세요" asks something); a letter alone among signs is a kaomoji's ("ヽ(°〇°)ﾉ")."""
    return rf"(?:(?:{words}){_SIGNS})+|{_SIGNS}"


# What only a customer says with nothing asked, where an agent's "可以", "是的" or "没有了" answers a question.
_CONFIRMS = (r"可以的?|行吧?|对的?|是的|没事了?|(?:没有|没|不用)了|没有(?:其他|其它|别的)(?:问题|事)了?|得[啦嘞喇]?|系[啊呀嘅]?"
             # and Hong Kong's Cantonese: nothing else (冇嘢 with its particle: 冇嘢收到 is "nothing came"), that's all
             r"|冇事[喇啦了]?|冇嘢[喇啦了]|系咁先")
_ACKNOWLEDGES = re.compile(_only(_ACKS + "|" + _FOR_A_PERSON + "|" + _OKS + "|" + _CONFIRMS))
_ACKNOWLEDGEMENT = re.compile(_only(_OKS))
_DROPPING = re.compile(rf"(?:^|\W)(?:{_DROPS})(?:\W|$)", re.I)
# Stopping what the bot is asking for, in a message of its own: "stop", "cancel it please", "I want to stop this",
# "取消", "不用了", "先不用了", "算了不退了" (never mind, no refund then), "不查了", "退出", Hong Kong's "唔要喇", "唔使喇", "唔退喇",
# or putting it off ("下次吧", "我再想想"); a refusal names
# what is given up (不退了, not 不是), so an answer ("订单123", "不是123是456") is never taken for one.
_STOPS = re.compile(_only(r"(?:please |i (?:want|wanna|would like) to |i'd like to |let'?s )?(?:stop|cancel|quit|exit)"
                          r"(?: (?:it|that|this))?(?: please)?"
                          r"|(?:请|帮我)?取消(?:吧|了|掉)?|(?:先|暂时|还是)?不(?:要|用|需要|退|换|查|买)了|停止?|退出|结束"
                          r"|唔(?:要|使|洗|退|换)(?:喇|啦|了|咗)?"
                          # or putting it off: "下次吧", "晚点再说", "我再想想"
                          r"|(?:那)?(?:下次|改天|晚点|回头)(?:再说)?吧?|我再(?:想想|考虑一下)"
                          rf"|{_DROPS}"))
_PERSON = re.compile(_only(_FOR_A_PERSON))
# One request for a person with the greeting, "please" or thanks Chinese customers write on without a stop (你好转人工,
# 麻烦转下人工, 转人工谢谢, 轉人工唔該, 唔該轉真人), asked as a question (可以转人工吗, 能不能帮我转人工, Hong Kong's 可唔可以轉真人呀)
# or with a particle (转人工啊, 人工呢). Not among the words of _ACKNOWLEDGES, where 你好 and 谢谢 are words of their own:
# a long clause would have two readings a word, and one that is not a request would take time in two to the power
# of its words to refuse.
_POLITE_PERSON = re.compile(rf"(?:你好|您好|唔该|(?:麻烦|劳烦)(?:您|你)?)?(?:请问)?(?:可以|可不可以|可唔可以|能不能|能否|能|可否)?"
                            rf"(?:{_FOR_A_PERSON})(?:吗|么|嘛|[啊呀吧啦呢])? ?(?:谢谢(?:您|你们?)?|唔该晒?)?{_SIGNS}")
_SIGNS_ALONE = re.compile(_SIGNS)  # a clause with no word in it
_ASKED = re.compile(r"\?")  # as read (NFKC), "？" too
# An agent's apology for what happened to the customer, which the next customer with the same trouble is owed too
# (not one for a wait: "抱歉让您久等了" is chatter).
_SORRY = (r"(?:i(?:['’]m| am) )?(?:so |very |really |truly )?sorry(?: (?:to hear (?:that|this)|about (?:that|this)"
          r"|for (?:the|any) inconvenience))?|(?:my )?apologies(?: for (?:the|any) inconvenience)?"
          r"|i apologi[sz]e(?: for (?:the|any) inconvenience)?|(?:很|非常|实在|真的|十分)?(?:抱歉|[不唔]好意思|对不起)(?:给(?:您|你)带来(?:的)?不便(?:了)?)?[哦哈呢啦呀]?"
          r"|(?:给(?:您|你)带来(?:的)?不便(?:之处)?了?)(?:(?:深表|十分|非常)?(?:抱歉|歉意))?|深表歉意|敬请(?:谅解|见谅)")
_APOLOGY = re.compile(_SORRY)
# A clause of an agent's that only greets, introduces the agent, acknowledges, asks whether the customer is still
# there, is sorry, says goodbye or that the agent will be back: whole clauses only, as "take care" or "sorry" begin
# answers too ("Take care when you open the box", "Sorry, we do not ship to Norway" is two clauses).
_CHATTER = re.compile(
    r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))(?: there)?(?: \w+){0,2}"
    r"|(?:this is|my name is|i['’]m|i am) \w+(?: (?:from|with|at) (?:the )?\w+(?: \w+){0,3})?"
    # "Ana here", "Ana from Demo Shop here"; not "click here", "not here"
    r"|(?!(?:click|tap|sign|start|look|right|over|from|it|its|everything|nothing|all|not)\b)[^\W\d_]+"
    r"(?: (?:from|with|at) (?:the )?\w+(?: \w+){0,3})? here"
    r"|how are you(?: (?:today|doing))?|welcome(?: to (?:the )?\w+(?: \w+){0,2})?"
    r"|are you still (?:there|here|with me|online)|i (?:understand|see)|(?:it(?:['’]s| is) )?my pleasure"
    r"|thanks?(?: you)? for (?:the|this|that|your) (?:information|info|details)"
    r"|(?:good)?bye(?:[ -]bye)?|see you(?: (?:soon|later))?|take care"
    r"|i(?:['’]ll| will) (?:be (?:right )?back|get back to you)(?: (?:shortly|soon|in a (?:moment|minute|sec)))?"
    r"|(?:您|你)?还在(?:吗|嘛|么)|在的(?:呢|哦|亲)?|(?:您请|请|您)(?:说|讲)|请(?:您)?稍后|再见|拜拜|晚安|早点休息[哦呀]?"
    # and Hong Kong's Cantonese, read in Simplified characters: 仲有冇其他可以幫到你？
    r"|(?:请问|您看)?(?:还有|仲有)冇?(?:其他|其它|别的|什么)(?:需要|要)?我?(?:可以|能)?(?:帮助|帮到?您|帮到?你|帮忙|咨询|问题|疑问)?"
    r"[的嘅]?(?:吗|呢|么|嘛|呀)?"
    r"|(?:(?:如果)?没有(?:其他|其它|别的)问题的话)?(?:那)?(?:我这边|我)?先(?:结束(?:会话|对话|本次服务)|下线|退出)了?[哦哈呢呀]?"
    r"|感谢(?:您的)?来访|感谢(?:您)?对(?:本店|我们)的(?:支持|信任|关注)|期待(?:您的)?(?:再次)?光临|我?了解了"
    r"|(?:您的问题)?(?:我|这边)?(?:已经)?(?:帮您)?记录(?:下来)?了"
    r"|欢迎(?:光临|光顾|咨询)\w{0,10}|(?:我是|我系|这里是|这边是)(?:人工)?客服\w{0,4}|(?:人工)?客服\w{0,3}为(?:您|你)服务|工号 ?\d+"
    r"|(?:请问)?(?:您|你)?(?:具体)?(?:是|遇到了?|有)(?:什么|哪些|啥)(?:问题|情况)(?:呢|吗)?"
    r"|(?:如|如果)?有(?:其他|其它|任何|咩)?问题(?:可以)?(?:欢迎)?随时(?:联系|咨询|找|揾)(?:我们|我哋|我)?|欢迎随时(?:联系|咨询)(?:我们)?"
    r"|(?:满意的话)?(?:麻烦|请)?(?:您|你)?(?:给|帮忙给)?(?:个|一个)?(?:好评|五星好评)[哦哈呢呀]?"
    r"|(?:这边)?(?:已经)?收到(?:您|你)的?(?:反馈|消息|信息)了?"
    r"|(?:很|非常|实在|真的|十分)?(?:抱歉|[不唔]好意思|对不起)(?:让(?:您|你))?久等了?|(?:要|让)(?:您|你)等(?:咗|了)?(?:咁|这么|好)?(?:耐|久)了?"
    r"|(?:感谢|谢谢)(?:您|你)?的?(?:理解|支持|配合)(?:(?:与|和)(?:理解|支持|配合))?"
    # 我係: Cantonese for 我是, read in Simplified characters (我系)
    r"|亲(?:爱的)?(?:顾客|用户|客户)?|我是(?:客服)?.{1,4}|我系(?!统|列)(?:客服)?.{1,4}|" + _SORRY + "|" + _only(_ACKS + "|" + _FOR_A_PERSON + "|" + _OKS + r"|谢谢.{0,4}?")
)
# Clauses end at punctuation, and at a space beside a Chinese character ("让您久等了 已经给您退款了"); not at an
# enumeration comma, which lists within one ("请提供您的姓名、电话和地址").
_CLAUSES = re.compile(r"[,.!?;:，。！？；：…~～()（）\n]+|(?<=[\u4e00-\u9fff])\s+|\s+(?=[\u4e00-\u9fff])")
# How long something takes is an answer, whatever holding phrase it comes in: "Please wait 3-5 business days."
_HOW_LONG = re.compile(
    r"(?:\d|\b(?:an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|a few|a couple of))\s*"
    r"(?:(?:business|working) )?(?:hours?|days?|weeks?|months?)\b|(?:\d|[一二两三四五六七八九十几半])\s*个?(?:工作日|天|周|星期|小时|月)"
)
# An agent's question back to the customer for what the answer needs: "Could you give me your order number?",
# "What's the email you ordered with?", "请提供一下您的订单号", "您的手机号是多少？". Learned as the answer, it would
# have the bot ask the next customer for a number it cannot use; the answer is what the agent says once given it.
_DETAIL = (r"(?:(?:order|tracking|account|reference|booking|invoice|confirmation|case|ticket|customer|member(?:ship)?"
           r"|phone|mobile|cell|contact|serial) ?(?:number|no|id|#)|order|e-?mail(?: address)?|(?:full )?name"
           r"|(?:(?:shipping|delivery|billing|home|e-?mail) )?address|post ?code|zip(?: code)?|user ?name|(?:phone )?number"
           r"|(?:contact |order |account )?details)")
_DETAIL_ZH = (r"(?:(?:订单|快递|运单|物流|手机|手提电话|手提|电话|会员|身份证)?(?:号码?|编号|单号)|联系(?:方式|电话)|手机|手提电话|电话"
              r"|(?:电子)?邮箱(?:地址)?|电子?邮件?(?:地址)?|账号"  # and Hong Kong's 電郵, 手提電話
              r"|用户名|(?:收货)?地址|姓名|(?:订单|商品|付款|支付|物流)?(?:截图|照片|图片))")
# Agents ask for two or three details at once: "your name and phone number", "您的收货地址和联系电话", "姓名、电话和地址".
_DETAILS = rf"{_DETAIL}(?: (?:and|or) (?:your |the )?{_DETAIL})*"
_OF_ZH = r"(?:收货人|收件人|下单时?的?|购买时?的?)?"  # whose or which: 收货人姓名, 下单手机号
_DETAILS_ZH = rf"{_OF_ZH}{_DETAIL_ZH}(?:(?:和|及|以及|或|或者|跟|、)(?:您|你)?的?{_OF_ZH}{_DETAIL_ZH})*"
_ASKS_FOR = re.compile(
    r"(?:(?:(?:could|can|would|will) you(?: please| kindly)? |(?:please |kindly )?)"
    r"(?:give|send|share|provide|tell|confirm|dm|let me know)(?: me| us)?(?: with)?"
    r"|(?:may|can|could) (?:i|we)(?: please)? (?:have|get|ask for|ask you for|know)|(?:i|we)(?:['’]ll| will| would)? need"
    r"|what(?:['’]s| is| was)|(?:would you )?mind (?:sharing|giving me|sending|providing))"
    rf"(?: please)? (?:your|the) {_DETAILS}"
    r"(?: (?:on|for|of) (?:your|the) (?:account|order|purchase|parcel|package)"
    r"| (?:that )?you (?:used|ordered|bought|paid|registered|signed up)(?: \w+){0,3})?"
    r"(?: (?:so|and|to)(?: that)?(?: i| we)?(?: can| could| will)? (?:check|look|help|find|see|track)"
    r"(?: (?:it|that|this|up|into it|for you))*)?(?: please)?"
    # and in Hong Kong's Cantonese: 可唔可以話我知你嘅訂單號碼, 你嘅電話係幾多
    rf"|(?:请问?|麻烦|方便|劳烦)?(?:您|你)?(?:能|可以|能否|可否|可唔可以)?再?(?:提供|发|告诉|报|给|说|话(?:我|我哋|我们)知)"
    rf"(?:一下|下|给?我们?)*(?:您|你)?[的嘅]?{_DETAILS_ZH}(?:好吗|可以吗|吗|呢|么|嘛|哦|呀)?"
    rf"|(?:请问)?(?:您|你)?[的嘅]?{_DETAILS_ZH}[是系](?:多少|几多|什么|哪个|咩)?(?:呢|呀|啊)?"
    rf"|(?:唔该|麻烦)?(?:您|你)?畀(?:个|一个)?(?:您|你)?[的嘅]?{_DETAILS_ZH}(?:我|我哋|我们)(?:吖|呀|啊)?"  # Cantonese: 唔該你畀個訂單號我
    rf"|(?:请|麻烦)?(?:您|你)?把?(?:您|你)?的?{_DETAILS_ZH}(?:发|告诉|复制)给?(?:我们?|一下|下|过来)+"
    r"|(?:请问)?(?:您|你)?(?:说的)?是?哪(?:个|一个|笔|件)(?:订单|商品|快递|包裹)(?:呢|呀|啊)?"
)
_FILLER_WORDS, _FILLER_CHARACTERS = 5, 3  # what a holding phrase may leave: English words ("that for you"), other letters ("我帮您")


def _holds(clause: str) -> bool:
    """Whether a clause is a holding or closing phrase with little else: "Please wait 3-5 business days for
    the refund" holds a phrase and says something; "let me check that for you" does not."""
    if not _HOLDING.search(clause):
        return False
    rest = _HOLDING.sub(" ", clause)
    return (not _HOW_LONG.search(rest) and len(re.findall(r"[a-z0-9]+", rest)) <= _FILLER_WORDS
            and len(re.findall(r"[^\W\da-z_]", rest)) <= _FILLER_CHARACTERS)


# WeChat's and WeCom's own emoticons, which reach the bot as their names in brackets ("好的[抱拳]", "[强]"), in
# Simplified characters as the clauses are read: emoji, no words.
_EMOTICONS = re.compile(
    r"\[(?:微笑|撇嘴|色|发呆|得意|流泪|害羞|闭嘴|睡|大哭|尴尬|发怒|调皮|呲牙|惊讶|难过|囧|抓狂|吐|偷笑|愉快|白眼|傲慢|困|惊恐|憨笑"
    r"|悠闲|咒骂|疑问|嘘|晕|衰|骷髅|敲打|再见|擦汗|抠鼻|鼓掌|坏笑|左哼哼|右哼哼|哈欠|鄙视|委屈|快哭了|阴险|亲亲|可怜|笑脸|生病|脸红"
    r"|破涕为笑|恐惧|失望|无语|嘿哈|捂脸|奸笑|机智|皱眉|耶|吃瓜|加油|汗|天啊|emm|社会社会|旺柴|好的|打脸|哇|翻白眼|666|让我看看"
    r"|叹气|苦涩|裂开|嘴唇|爱心|心碎|拥抱|强|弱|握手|胜利|抱拳|勾引|拳头|ok|合十|啤酒|咖啡|蛋糕|玫瑰|凋谢|菜刀|炸弹|便便|月亮|太阳"
    r"|庆祝|礼物|红包|发|福|烟花|爆竹|猪头|跳跳|发抖|转圈)\]")


# Slack's emoji, which reach the bot as their names between colons (":+1:", ":pray::skin-tone-2:"): emoji, no words.
_SLACK_EMOJI = re.compile(r":(?:[a-z][a-z0-9_+'-]*|\+1):")


def _read(text: str) -> str:
    """``text`` as the rules read it: in Simplified characters, NFKC-normalised, in lower case."""
    return unicodedata.normalize("NFKC", model_text(text)).lower()


def _clauses(text: str) -> list[str]:
    """``text``'s clauses as the rules read them (:func:`_read`), without WeChat's emoticons (:data:`_EMOTICONS`) and
    Slack's emoji (:data:`_SLACK_EMOJI`)."""
    return [c for c in map(str.strip, _CLAUSES.split(_SLACK_EMOJI.sub(" ", _EMOTICONS.sub(" ", _read(text))))) if c]


def says_nothing(text: str) -> bool:
    """Whether an agent's message is only greetings, introductions, acknowledgements, holding and closing
    phrases."""
    return all(_CHATTER.fullmatch(c) or _holds(c) or _ASKS_FOR.fullmatch(c) for c in _clauses(text))


def asks_for_details(text: str) -> bool:
    """Whether an agent's message asks the customer for what the answer needs ("Could you give me your order
    number?", "请提供一下您的订单号"): what the customer writes next gives it, and asks nothing new."""
    return any(map(_ASKS_FOR.fullmatch, _clauses(text)))


# A customer's question: a sentence ending in a question mark that holds a word ("12345?" is a number given
# unsure), or a clause that begins with a question word or ends in a question particle ("do you ship to norway",
# "你们寄挪威吗"), or asks with a Chinese question word.
_QUESTION = re.compile(
    r"[^\W\d_][^?？]*[?？]|(?:^|[,.!;:，。！；：\n]\s*)(?:(?:and|also|but|oh|btw|plus|so) )*(?:do|does|did|can|could|will"
    r"|would|is|are|was|were|should|may|where|what|when|why|how|which|who)\b|[吗么嘛呢](?:[,.!;:，。！；：\s]|$)"
    r"|什么|怎么|为什么|哪|多少|是否|能不能|可不可以|有没有|是不是|会不会"
    r"|有冇|系咪|点样|点解|几时|边度|边个|几多|可唔可以|得唔得"  # and Hong Kong's Cantonese ones
)
_SHORT_WORDS, _SHORT_CHARACTERS = 4, 10  # how long a name or the like may be: "jane doe", "张三"
# A customer's new request, said as one and not asked: a new topic begun ("also", "另外", "还有"), or what they want
# or need ("i need to", "我要", "帮我"). A name is none of these.
_REQUEST = re.compile(
    r"^(?:(?:and |oh )?also|plus|btw|by the way|one more thing|another thing)\b"
    r"|\b(?:i|we)(?: also| still)? (?:need|want|would like|wanna)\b|\bi['’]d (?:also )?like\b|\b(?:need|want) to\b"
    r"|另外|还有|还要|还想|顺便|此外|我(?:还|也)?(?:要|想|需要)|想要|需要|帮我|给我"
)


def gives_details(text: str) -> bool:
    """Whether a customer's message, after an agent asked for their details (:func:`asks_for_details`), reads
    as the details: it asks no question, and holds a number or contact details ("12345", "订单号是20261205",
    "it's jane@example.com") or is short ("Jane Doe") and makes no request. One that asks ("also, do you ship to
    Norway?", "还有，你们寄挪威吗？") or says a new request ("另外我要改地址", "also need to change my address") is a
    new question, which the agent's next reply answers."""
    read = _read(text)
    if _QUESTION.search(read):
        return False
    return bool(re.search(r"\d", read) or _CONTACT.search(redact(text).lower()) or len(re.findall(r"[a-z]+", read)) <= _SHORT_WORDS
                and len(re.findall(r"[^\W\da-z_]", read)) <= _SHORT_CHARACTERS and not _REQUEST.search(read))


def _names_contact(clause: str) -> bool:
    """Whether a clause is only contact details or the words around them ("我的手机号", "[phone]", "my email
    is [email]"), in a message that gives some: the clauses split "电话：98765432" in two."""
    return all(_CONTACT_WORDS.fullmatch(part) for part in _CONTACT.sub(" ", clause).split())


def asks_nothing(text: str) -> bool:
    """Whether a customer's message only greets, acknowledges, nudges ("ok thanks", "在吗？", "麻烦快点"),
    gives personal data for the agent ("我的手机号13812345678") or stands for a picture or a file (:data:`SENT`). Narrower than :func:`says_nothing`: a
    customer's "还有其他颜色吗" or "please hold my order" asks something, in the words an agent's
    "还有其他问题吗" or "please hold" says nothing with."""
    if text in SENT_TEXTS:  # what the bot could not read: no question to learn an answer to
        return True
    clauses = _clauses(redact(text))
    gives = any(_CONTACT.search(c) for c in clauses)
    return all(_ACKNOWLEDGES.fullmatch(c) or gives and _names_contact(c) for c in clauses)


# Signs that agree or thank where a customer writes no word: 👍, 👌, 🙏, 🤝, ✅, and WeChat's [强], [OK], [抱拳], [握手], [好的],
# [合十], [胜利] (as read: in Simplified characters, WeChat's Traditional [強] too), and Slack's :+1:, :ok_hand:, :pray:. A message of other signs ("?", "😡", "[发怒]") is no acknowledgement.
_AGREEING = re.compile(r"[\U0001f44d\U0001f44c\U0001f64f\U0001f91d\u2705]|\[(?:强|ok|抱拳|握手|好的|合十|胜利)\]"
                       r"|:(?:\+1|thumbsup|ok_hand|pray|handshake|white_check_mark|heavy_check_mark):")


# Signs of a displeased customer, whatever their words say: 👎, 😡, 😠, 🤬, 😤, 😒, 🙄, 😞, 😢, 😭, 💢, WeChat's [弱]
# (thumbs down), [发怒], [撇嘴], [难过], [流泪], [大哭], [抓狂], [鄙视], [白眼], [委屈], [快哭了], [衰], and Slack's :-1:,
# :thumbsdown:, :rage:, :angry:, and ":(".
_DISPLEASED = re.compile(r"[\U0001f44e\U0001f621\U0001f620\U0001f92c\U0001f624\U0001f612\U0001f644\U0001f61e"
                         r"\U0001f622\U0001f62d\U0001f4a2]|\[(?:弱|发怒|撇嘴|难过|流泪|大哭|抓狂|鄙视|白眼|委屈|快哭了|衰)\]"
                         r"|:(?:-1|thumbsdown|rage|angry|disappointed|cry|sob|unamused|face_with_rolling_eyes):|:-?\(")


# A short follow-up that asks again what was asked, of another thing: a connective before it ("那789呢", "那个789呢",
# Hong Kong's "咁789呢？" and "仲有 456", "and 456?", "also 456?", "what about order #456?"), or 呢 after it ("789呢"), and
# nothing else but 的 (Hong Kong's 嘅) after the thing: "那789的呢", "789号的呢", "咁789號嘅呢" ask of 789's. The connective
# may name another order before the thing ("还有一单789呢", "另外一单456呢", Hong Kong's "仲有張單456呢"): what is asked
# about is the number. Signs may stand around the thing ("那「789」呢", "那，789呢？"), and after it emoji, WeChat's
# emoticons, Slack's emoji and a please or thanks ("那789呢[捂脸]", "and 789? :pray:", "and 789 pls?", "咁789呢唔該"). So does
# asking to look at it too: "can you check 456 too", "456 as well", "再帮我查一下456", "456也查一下". The thing may be
# pointed at as one of several: "what about the 456 one", "and that 456 one?", "456那单呢", "那个456那张呢". Longer, a
# message says more than that.
_FOLLOW_UP_END = r"(?:[\W_]|\[\w{1,6}\]|:[a-z0-9_+'-]+:|(?:please|pls|plz|thanks|thx|谢谢|謝謝|唔该|唔該)(?![a-z]))*"
_FOLLOW_UP = re.compile(
    r"(?i)\W*(?:(?P<connective>(?:(?:and |so )?(?:what|how) about|(?:and )?also|and(?: for)?|then|那(?:么|麼|个|個)?"
    r"|咁(?:样|樣)?|还有|還有|仲有|另外"
    r"|(?:(?:can|could|would) you |please |pls |plz |now )?(?:also )?(?:check|look up|try)"
    r"|(?:[帮幫]我)?[再也](?:[帮幫][我忙]?)?[再也]?[查睇](?:一下|下|查)?)"
    r"(?:\s*[一1]?[个個张張]?(?:订单|訂單|单|單))?)(?![a-z])[^\w#]*)?(?:(?:the|that|this)\s+(?=[#\w]))?"
    rf"(?P<asked>[#\w].*?)\W*?(?:[的嘅]\W*?)?(?:(?:one|(?:那|这|這)[个個张張单單])(?![a-z])\W*?)?(?:(?P<particle>呢)|\s*(?P<too>too|as well|也(?:[帮幫]我)?[查睇](?:一下|下)?))?"
    rf"{_FOLLOW_UP_END}")
_FOLLOW_UP_CHARS = 40


def follow_up(text: str) -> tuple[int, int] | None:
    """Where in ``text``, a customer's short follow-up (:data:`_FOLLOW_UP`), is what it asks about: "789" of "那789呢",
    so that it is read as the answer to "what's your order number?" is (the whole message); None for any other
    message."""
    match = _FOLLOW_UP.fullmatch(text) if len(text) <= _FOLLOW_UP_CHARS else None
    return match.span("asked") if match and (match["connective"] or match["particle"] or match["too"]) else None


_NUMBER = r"#?[\d〇零一二三四五六七八九幺两兩]++(?:-[\d〇零一二三四五六七八九幺两兩]++)*+"  # the number said wrong, whole
# A short correction of what the customer said: "oh sorry, I meant 123", "oops typo, it's 789", "actually it's 456",
# "not 999, 456", "不好意思，打错了，是123", "不是999，是456", "说错了 应该是789" (in Traditional characters too, and Hong
# Kong's 唔好意思, 打錯咗, 唔係999係456): words that correct (_CORRECTING), maybe with an interjection, "no" or "it's"
# among them, then what it should have been, and after it signs, emoji and a please or thanks.
_CORRECTING = (r"sorry|oops|whoops|my bad|my mistake|(?:a |my )?typo|wrong (?:number|one|order)|correction|actually"
               r"|i (?:meant|mean)|meant|i typed (?:it )?wrong|(?:it )?should (?:be|have been)"
               r"|the (?:right|correct) (?:one|number) is|not " + _NUMBER +
               r"|不好意思|抱歉|[对對]不起|我?(?:[打输輸写寫说說搞弄填])?[错錯]了|[应應][该該][是系係]|我是[说說]|我[说說]的是|我的意思是"
               r"|正确的是|正確的是|更正(?:一下)?|不是" + _NUMBER +
               r"|唔好意思|(?:[打讲講写寫])?[错錯]咗|唔[系係]" + _NUMBER)
_CORRECTION = re.compile(
    rf"(?i)\W*(?P<said>(?:(?:{_CORRECTING}|oh|ah|uh|um|no|nope|it'?s|it is|that'?s|哦|噢|啊|呃|是|就是|[系係])(?![a-z])\W*)++)"
    rf"(?P<asked>[#\w].*?){_FOLLOW_UP_END}")
_CORRECTS = re.compile(rf"(?i)(?<![a-z])(?:{_CORRECTING})(?![a-z])")


def corrected(text: str) -> tuple[int, int] | None:
    """Where in ``text``, a customer's short correction of what they said (:data:`_CORRECTION`), is what it should
    have been: "123" of "sorry, I meant 123", of "不是999，是123", so that it is read as the answer to "what's your
    order number?" is (the whole message). Such a correction of a mistyped order number, while the order's action
    waited for it, got "Sorry, I'm not sure I understood". None for any other message."""
    match = _CORRECTION.fullmatch(text) if len(text) <= _FOLLOW_UP_CHARS else None
    return match.span("asked") if match and _CORRECTS.search(match["said"]) else None


def asked_about(text: str) -> tuple[int, int] | None:
    """Where in ``text`` is the thing a short follow-up (:func:`follow_up`) or correction (:func:`corrected`) names:
    either asks the same as before, of it."""
    return follow_up(text) or corrected(text)


# What a message may say besides a value for it to be only that value ("order 123", "订单号是123", "#789", "it's 456"):
# signs, the words that name the thing (the bot's own: :func:`names_only`), and words that point at any thing, or say
# please or thanks.
_NAMING = (r"numbers?|num|nr|no|id|the|my|it'?s|it is|that'?s|is|please|pls|plz|thanks|thank you|thx"
           r"|号码?|號碼?|编号|編號|就是|是|就係|係|我的|我嘅|谢谢|謝謝|唔该|唔該")


def names_only(rest: str, names: Iterable[str] = ()) -> bool:
    """Whether ``rest``, a message without the value it gives, says nothing else: words of ``names``, which name the
    thing in the bot's own data (``Project.naming_words``: "order", "订单" for an order number, "booking" for a
    booking reference), or of :data:`_NAMING`: "order " of "order 123", "订单号是" of "订单号是123", nothing of "123".
    "去咗边" of "456去咗边" (where has 456 got to?) says more."""
    naming = "|".join([*(re.escape(name) for name in sorted(names, key=len, reverse=True)), _NAMING])
    return re.fullmatch(rf"(?i)[\W_]*+(?>(?:{naming})(?![a-z\d])[\W_]*+)*+", rest) is not None


# Not knowing or not having what the bot asks for: "I don't know", "I don't have it", "no idea", "dunno", "idk", "I
# forgot", "can't find it", "不知道", "忘了", "找不到", "没有订单号", "不记得了", Hong Kong's "唔知", "唔记得", "搵唔到"
# (read in Simplified characters), with what it is named after ("the number", "订单号").
_THE_THING = r"(?: (?:it|that|one|(?:the|my|an?|any) (?:order )?(?:number|no|#|id|email)|(?:the|my) order(?: number)?))?"
_SORRY_WORDS = r"sorry|oh|um+|uh+|hmm+|不好意思|抱歉|对不起|唔好意思|呃|额"  # before it, or a clause of their own
_LACKING = (
    _SORRY_WORDS + r"|(?:i )?(?:do not|don['’]?t|didn['’]?t|did not) (?:know|have|remember|get|keep)" + _THE_THING
    + r"|(?:i )?have no (?:idea|clue|(?:order )?number)|no (?:idea|clue)|(?:i )?dunno|idk|(?:i(?:['’]m| am) )?not sure"
    r"|(?:i )?(?:forgot|forget|lost|deleted)" + _THE_THING
    + r"|(?:i )?(?:can['’]?t|cannot|couldn['’]?t) (?:find|remember)"
    + _THE_THING + r"|(?:我)?(?:也)?(?:不知道|不晓得|不清楚|不记得|记不得|记不清|没记住|忘记?|找不到|查不到|唔知道?|唔清楚|唔记得"
    r"|[搵揾]唔到|冇)(?:了|啦|喇|咗)?"
    r"(?:(?:订单|单|快递)?(?:号码?|编号))?(?:了|啦|喇|咗)?[啊呀哦诶欸]?|(?:我)?没有?(?:订单|单)?(?:号码?|编号)(?:了|啦)?[啊呀哦]?")


def _words_of(words: str) -> re.Pattern[str]:
    """A clause made only of ``words``, with signs and emoji between and after them, each word read one way, at once
    (an atomic group): read as :func:`_only` reads words, "i" of "i don't know" could be a letter alone among signs or
    the word's own, two readings a word, and a long clause that is not one took time in two to the power of its words
    to refuse."""
    return re.compile(rf"(?>(?:{words})(?![a-z\d])[\W_]*+)++")


_LACKS = _words_of(_LACKING)
_SORRY_ALONE = _words_of(_SORRY_WORDS)


# Saying yes to what the bot offered: "yes please", "yep", "please do", "ok do it", "go ahead", "是的", "对啊", "没错", "确定",
# "要", "好的，麻烦了",
# "可以，帮我处理吧", Hong Kong's "係呀", "好呀唔該" (read in Simplified characters); an "ok", "sure" or "好的" alone
# acknowledges (:func:`acknowledges`), and says yes to nothing in particular.
_YES = (r"yes|yeah|yep|yup|ya|please do|do it|go ahead|(?:that )?(?:would be|sounds) (?:great|good)|是[的啊呀]?|对[的啊呀]?|要的?"
        r"|没错|确定|确认|同意|(?:对|是)?就是(?:这个|它)"
        r"|需要|麻烦(?:你|您)?了|麻烦(?:你|您)|帮我(?:处理|取消|弄|转)?(?:一下|下)?吧?|系[呀啊的]?|好[呀啊吖哇]")
_AGREES = _words_of(rf"{_YES}|ok(?:ay)?|sure|please|pls|plz|thanks?|thank you|thx|好的?[呀啊吧]?|可以[的呀啊]?|行|嗯|唔该[晒哂]?")
_SAYS_YES = re.compile(rf"(?<![a-z])(?:{_YES})(?![a-z])")


def accepts(text: str) -> bool:
    """Whether a customer's message only says yes ("yes please", "ok do it", "是的", "好的，麻烦了"): to a reply that
    offered one button (the demo's "Have an agent cancel it"), it is that button, where it got "All right. If there's
    anything else, just ask." and the agent offered never came."""
    clauses = _clauses(text)
    return (bool(clauses) and all(map(_AGREES.fullmatch, clauses)) and not _ASKED.search(_read(text))
            and any(map(_SAYS_YES.search, clauses)))


def lacks_answer(text: str) -> bool:
    """Whether a customer's message only says they do not know or have what the bot asked for ("I don't know the
    number", "dunno", "不知道订单号", "忘了"): an action waiting for it runs again, and says where to find it or offers
    a person, where the classifier, unsure of such a message, had the fallback answer, or read "no idea" as "ok" and
    ended the wait with "All right. If there's anything else, just ask."."""
    clauses = [c for c in _clauses(text) if not _SORRY_ALONE.fullmatch(c)]  # "sorry, I don't know", "不好意思，忘了"
    return bool(clauses) and not all(map(_SIGNS_ALONE.fullmatch, clauses)) and all(map(_LACKS.fullmatch, clauses))


def drops_it(text: str) -> bool:
    """Whether a customer's acknowledgement (:func:`acknowledges`) drops what they asked ("never mind", "ok forget
    it", "算了吧"): an action waiting for an answer to its question stops waiting, where "ok" has it ask again."""
    return acknowledges(text) and bool(_DROPPING.search(_read(text)))


def stops_asking(text: str) -> bool:
    """Whether a customer's message only stops what the bot asks them for ("stop", "cancel", "取消"), or drops it
    (:func:`drops_it`): a form asking for its slots ends, where any other message that is no answer has it ask
    again once that message is answered."""
    clauses = _clauses(text)
    worded = not all(map(_SIGNS_ALONE.fullmatch, clauses))
    return drops_it(text) or (worded and all(map(_STOPS.fullmatch, clauses)))


def acknowledges(text: str) -> bool:
    """Whether a customer's message only acknowledges or thanks ("ok", "thanks 👍", "好的[抱拳]", "[强]"): the
    acknowledgements of :func:`asks_nothing`, without its greetings, nudges and requests for a person, which ask
    the bot for something, and without a sign of displeasure ("ok 😡", "thanks 👎", "好的[发怒]"), which is no
    acknowledgement, nor with a question mark ("received?", "all good?", "ok?"), which asks whether it is. An answer
    to such a message is "glad to help", never "I didn't understand"."""
    clauses = _clauses(text)
    worded = not all(map(_SIGNS_ALONE.fullmatch, clauses))
    return ((worded or bool(_AGREEING.search(_read(text)))) and not _DISPLEASED.search(_read(text))
            and not _ASKED.search(_read(text)) and all(map(_ACKNOWLEDGEMENT.fullmatch, clauses)))


def wordless(text: str) -> bool:
    """Whether a customer's message holds no word nor number: emoji, WeChat's emoticons, Slack's, kaomoji or
    punctuation alone ("😭😭", "？？", "[流泪][流泪]", "..."), which a classifier or an answer index reads nothing in."""
    return all(map(_SIGNS_ALONE.fullmatch, _clauses(text)))


# Wanting, in a clause of its own beside a request for a person in the other language, as customers who mix Chinese
# and English write it: "我想 talk to a human", "我要找 agent", "I want 人工客服", "转人工 please".
_WANTING = re.compile(r"(?:我要|我想要?|我需要)?(?:找|揾|跟|和|同)?|please|pls|plz|i (?:want|need)(?: to talk to)?")


def asks_for_a_person(text: str) -> bool:
    """Whether a customer's message asks for a person and nothing else ("talk to a human", "hi, agent please",
    "转人工", "我想 talk to a human"), in the words :func:`asks_nothing` reads such a request with: the bot hands
    such a message off as it does the button for a person, also where no intent was taught to ask for one."""
    clauses = _clauses(text)
    return (any((_PERSON.fullmatch(c) or _POLITE_PERSON.fullmatch(c)) and not _SIGNS_ALONE.fullmatch(c) for c in clauses)
            and all(_ACKNOWLEDGES.fullmatch(c) or _POLITE_PERSON.fullmatch(c) or _WANTING.fullmatch(c) for c in clauses))


# What a customer says of an answer that missed: "不对", "你说的不对", "还是不对", "不是这个", "这不是我要的", "我问的不是这个",
# "不是我要的答案", "你搞错了吧", "你理解错了", "你没明白我的意思", "你在说什么", "答非所问",
# Hong Kong's 唔係, 唔啱 (都話唔啱啦: "I said it's wrong"), "that's wrong",
# "not what I asked" (read in Simplified characters), after "no" or not. No intent's words: the demo's classifier
# read "不对" and "不是" as "ok", as it reads "no" (to "anything else?"), and said "glad to help".
# Each its one reading (a particle after 不是 goes before what it is not, or ends it: "不是这个意思", "不是这样的"; whose
# answer or what, 这个 or 我问的, only leads a clause, or "不对这个不对" would be read in two), or a long run of them would
# take time in two to the power of its words to refuse.
_WRONG = (r"(?:(?<!\w)(?:这个?|那个?|你?(?:说|讲|答|回答)[的得]|我(?:问|说|要|想问)的))?(?:完全|根本|还是|都|全)?不[对是]"
          r"(?:(?:的|啊|呀|吧|哦)?(?:这个|这样|那个|(?:我要|我问|我想要|我想问)的(?:答案|回答)?)(?:意思|问题)?)?(?:的|啊|呀|吧|哦)?"
          r"|(?:你|答案)?(?:答|说|回答|搞|弄|理解|听|看)?错了(?:吧|啊|呀|哦)?"
          # not understood (你没明白我的意思, 没理解我的问题), or what is it talking about (你在说什么, Hong Kong's 你講咩呀)
          r"|你?没有?(?:明白|理解|听懂|看懂)(?:我的(?:意思|问题)|我说的|我问的)?(?:啊|呀|吧|哦)?"
          r"|你(?:在)?(?:说|讲)(?:什么|咩|乜嘢?)(?:呀|啊|呢)?"
          r"|(?:答非所问|文不对题|牛头不对马嘴)[啊呀吧]?"
          # and Hong Kong's: 唔係呀, 唔係我想問嘅 (not what I asked), 你講錯咗, 錯晒 (all wrong)
          r"|唔系(?:呢个|咁|我想问[的嘅]?|我要[的嘅]?)?[呀啊喎]?|(?:都话|都讲咗)?唔啱(?:啦|喇|呀|㗎)?|(?:你)?(?:讲|答|搞)?错[咗晒]"
          r"|(?:that|this|it)(?:['’]?s| is) (?:wrong|not right|incorrect|not it|not what i (?:asked|meant|wanted))"
          r"|wrong(?: answer)?|not right|incorrect|not what i (?:asked(?: for)?|meant|wanted)")
_WRONG_WORDS = re.compile(_WRONG)
_SAYS_WRONG = re.compile(_only(f"{_WRONG}|no|nope|nah"))


def says_wrong(text: str) -> bool:
    """Whether a customer's message only says the bot's answer missed ("不对", "不是这个", "no, that's wrong"): a miss
    to the bot, to be put another way, where "no" alone is an answer to "anything else?"."""
    clauses = _clauses(text)
    return any(map(_WRONG_WORDS.search, clauses)) and all(map(_SAYS_WRONG.fullmatch, clauses))


# Where a sentence ends: at its stop and the space after it ("2.5" goes on) after a word ("e.g." goes on), a Chinese
# stop, a line break.
_SENTENCE_ENDS = re.compile(r"(?<=\w\w)[.!?]+[\"')”’」』）]*\s+|[。！？]+[”’」』）]*\s*|\n+")


def _from_what_it_says(text: str) -> str:
    """``text`` from its first sentence that says something: an agent's answer begins "Hi, I'm Anna. Thanks for
    waiting!", which the bot would say to the next customer as Anna, after no wait. Only whole sentences at its
    start go, so that no sentence is cut; an apology for what happened ("I'm sorry!") and a closing sentence stay,
    as they fit the next customer too ("Anything else?")."""
    start = 0
    for end in (match.end() for match in _SENTENCE_ENDS.finditer(text)):
        if not says_nothing(text[start:end]) or any(map(_APOLOGY.fullmatch, _clauses(text[start:end]))):
            break
        start = end
    return text[start:]


def run_answer(texts: list[str]) -> str:
    """What a run of an agent's messages to one question answers: the messages that say something, each from
    its first sentence that does, one a line, each once (an agent resends a reply the customer asked after);
    empty when none does (the agent is still looking)."""
    return "\n".join(dict.fromkeys(_from_what_it_says(text) for text in texts if not says_nothing(text)))
