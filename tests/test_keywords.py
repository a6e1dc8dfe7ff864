"""Tests for parsers.keywords: reply keywords from config/keywords.toml and subject commands."""

from pathlib import Path

import pytest

from config.forms import load_keywords, load_reply_contexts
from parsers.keywords import Command, KeywordMatch, match_keyword, parse_command

KEYWORDS_FILE = Path(__file__).resolve().parents[1] / "config" / "keywords.toml"
KEYWORDS = load_keywords(KEYWORDS_FILE)
CONTEXTS = load_reply_contexts(KEYWORDS_FILE, KEYWORDS)


def match(text: str) -> KeywordMatch:
    return match_keyword(text, KEYWORDS)


FOUND = [
    # Past forms and word orders people use (config/keywords.toml)
    ("AGREED", "agree", ""), ("Approved.", "agree", ""), ("确认签字", "confirm", ""),
    # The examples of the issue
    ("需补充信息：请提供BOM成本明细", "need_info", "请提供BOM成本明细"),
    ("结果：采用方案B", "result", "采用方案B"),
    ("同意", "agree", ""),
    ("AGREE - looks good", "agree", "looks good"),
    ("同意，但需要调整时间", "agree", "但需要调整时间"),
    # Width, case, brackets and trailing punctuation
    ("同意。", "agree", ""),
    ("同意！！", "agree", ""),
    ("【同意】", "agree", ""),
    ("[同意]", "agree", ""),
    ("［同意］", "agree", ""),
    ("（同意）", "agree", ""),
    ("*AGREE*", "agree", ""),
    ("Approve!", "agree", ""),
    ("approve", "agree", ""),
    ("ＡＧＲＥＥ", "agree", ""),
    ("ＡＧＲＥＥ　looks good", "agree", "looks good"),
    ("同意～", "agree", ""),
    ("同意👍", "agree", "👍"),
    ("Approve 👍", "agree", "👍"),
    ("　　同意。", "agree", ""),  # full-width indentation, as Chinese letters are typed
    ("\u00a0\u200b同意", "agree", ""),  # left by Outlook's HTML-to-text
    ("【需补充信息】请提供BOM成本明细", "need_info", "请提供BOM成本明细"),
    # Longest keyword wins; particles
    ("同意需求", "agree", ""),
    ("同意需求。按期推进", "agree", "按期推进"),
    ("签字确认", "confirm", ""),
    ("签字确认：以上结果无异议", "confirm", "以上结果无异议"),
    ("确认了，没问题", "confirm", "没问题"),
    ("同意啦", "agree", ""),
    # Multi-word English keywords, flexible spacing and case
    ("NEED INFO: BOM cost breakdown", "need_info", "BOM cost breakdown"),
    ("need-info: BOM cost breakdown", "need_info", "BOM cost breakdown"),
    ("Need Info - which supplier?", "need_info", "which supplier?"),
    ("needinfo", "need_info", ""),
    ("SIGN OFF", "confirm", ""),
    ("Sign-off", "confirm", ""),
    ("sign off.", "confirm", ""),
    # Space-separated text: Chinese always, English when written in capitals or not a word
    ("同意 没问题", "agree", "没问题"),
    ("AGREE with Bob, move on", "agree", "with Bob, move on"),
    ("Agree, but move the review to Friday", "agree", "but move the review to Friday"),
    ("Agree, but need info on the BOM", "agree", "but need info on the BOM"),
    ("Delay 2 days, the supplier is late", "delay", "2 days, the supplier is late"),
    ("Agree 没问题", "agree", "没问题"),
    # Every action, as people write them
    ("建议调整节点：样机评审 改到 12月10日", "propose", "样机评审 改到 12月10日"),
    ("PROPOSE: prototype review on Dec 10", "propose", "prototype review on Dec 10"),
    ("进度：样机已完成80%，下周三联调", "progress", "样机已完成80%，下周三联调"),
    ("延期：供应商延迟发货，新计划12月5日完成", "delay", "供应商延迟发货，新计划12月5日完成"),
    ("会议：12月1日 15:00 腾讯会议 123-456-789", "meeting", "12月1日 15:00 腾讯会议 123-456-789"),
    ("MINUTES", "minutes", ""),
    ("驳回：第3项数据有误", "reject", "第3项数据有误"),
    ("REJECT: row 3 is wrong", "reject", "row 3 is wrong"),
    ("争议：研发与市场对上线时间有分歧", "dispute", "研发与市场对上线时间有分歧"),
    ("复盘：按期交付，成本超支5%", "retro", "按期交付，成本超支5%"),
    ("关闭", "close", ""),
    ("CLOSE", "close", ""),
    # A colon introduces the keyword's own text, keywords in it included
    ("结果：同意", "result", "同意"),
    ("确认：同意方案B", "confirm", "同意方案B"),
    # The same action twice is not ambiguous
    ("同意，同意需求", "agree", "同意需求"),
    # Greetings, salutations and banners above or in front of the keyword
    ("您好\n同意", "agree", ""),
    ("你好！\n\n同意。", "agree", ""),
    ("王经理：\n    同意。", "agree", ""),
    ("王经理：同意", "agree", ""),
    ("审批意见：同意", "agree", ""),
    ("王经理您好，同意", "agree", ""),
    ("张总：您好！\n需补充信息：供应商报价单", "need_info", "供应商报价单"),
    ("张总，您好！\n\n确认", "confirm", ""),
    ("各位好，\n进度：样机已完成", "progress", "样机已完成"),
    ("各位领导、同事：\n纪要：\n1. 张三 12月1日前提交测试报告", "minutes", "1. 张三 12月1日前提交测试报告"),
    ("大家好！\n结果：采用方案B", "result", "采用方案B"),
    ("Hi Zhang,\nagree", "agree", ""),
    ("Hi Zhang, agree.", "agree", ""),
    ("Hi 张总，同意", "agree", ""),
    ("Hello all\n\nAGREE - looks good", "agree", "looks good"),
    ("Dear Ms. Chen,\n\nApprove.", "agree", ""),
    ("Good morning,\nNEED INFO: unit price", "need_info", "unit price"),
    ("Zhang Wei,\nSign off", "confirm", ""),
    ("[外部邮件]\n同意", "agree", ""),
    ("[External]\nApprove", "agree", ""),
    ("[EXTERNAL SENDER]\n\nREJECT: wrong quote", "reject", "wrong quote"),
    ("【外部邮件】请注意邮件安全，勿点击不明链接\n\n同意，按计划推进", "agree", "按计划推进"),
    ("EXTERNAL EMAIL\n同意", "agree", ""),
    ("*** EXTERNAL ***\n同意", "agree", ""),
    ("注意：此邮件来自外部\n确认", "confirm", ""),
    ("注意：此邮件来自外部发件人，请谨慎处理。\n\n确认", "confirm", ""),
    ("CAUTION: This email originated from outside of the organization. Do not click links or open "
     "attachments unless you recognize the sender and know the content is safe.\n\nAGREE - looks good",
     "agree", "looks good"),
    # The same banner wrapped by plain-text conversion
    ("CAUTION: This email originated from outside of the organization. Do not click links or open\n"
     "attachments unless you recognize the sender and know the content is safe.\n同意",
     "agree", ""),
    ("You don't often get email from wang.qiang@client.example.cn. Learn why this is important "
     "<https://aka.ms/LearnAboutSenderIdentification>\n\nAPPROVE", "agree", ""),
    ("你不经常收到来自 wang.qiang@client.example.cn 的电子邮件。了解这一点为什么很重要\n同意", "agree", ""),
    ("[External]\nHi Zhang,\n\nSIGN OFF", "confirm", ""),
    ("————————\n同意", "agree", ""),
    # The following lines belong to the text
    ("需补充信息：\n1. BOM成本明细\n2. 供应商报价", "need_info", "1. BOM成本明细\n2. 供应商报价"),
    ("同意。\r\n\r\n谢谢！", "agree", "谢谢！"),
    ("延期\n原因：供应商延迟\n新计划：12月5日", "delay", "原因：供应商延迟\n新计划：12月5日"),
    # A short acknowledgement before the keyword (issue 10: people write 好的，同意)
    ("好的，同意", "agree", ""),
    ("收到，确认。谢谢", "confirm", "谢谢"),
    ("OK, AGREE", "agree", ""),
    # The second meaningful line, when the first has no keyword (收到，马上处理。 then 进度：…);
    # the first line's words stay with the text
    ("收到，马上处理。\n进度：BOM 已完成 80%", "progress", "收到，马上处理。\nBOM 已完成 80%"),
    ("谢谢，收到\n同意", "agree", "谢谢，收到"),
    ("很好，\n关闭", "close", "很好，"),
    # Traditional Chinese
    ("確認", "confirm", ""),
    ("駁回：成本過高", "reject", "成本過高"),
    ("需補充資訊：BOM 明細", "need_info", "BOM 明細"),
]


@pytest.mark.parametrize(("text", "action", "rest"), FOUND)
def test_keyword(text: str, action: str, rest: str) -> None:
    assert match(text) == KeywordMatch(action, rest)


NOT_FOUND = [
    # Negation
    "不同意", "未确认", "无法确认", "不确认", "暂不同意", "暂不同意，成本太高",
    "not approved", "Not approve", "don't agree", "do not agree", "I don't agree.", "Disagree",
    "NOT APPROVED",
    # Inside a word or a sentence
    "I agree with Bob's concerns", "Agree with Bob's concerns", "Close to done, will update tomorrow",
    "Progress is slow this week", "确认一下细节再说", "同意的话请回复", "同意吗？",
    "关于进度的问题", "Approved by whom?",
    # A question is not a decision
    "同意？", "Approve?", "同意 ？",
    # Only the first two meaningful lines count, and a first line that mentions a keyword
    # anywhere (a sentence about it) lets none count
    "我看了方案，有几个问题：\n1. 成本\n确认：无", "我们上周已经同意过了\n确认", "We approved it last week\nCONFIRM",
    "看了方案，觉得成本偏高，同意的话需要再讨论", "关于第三点的确认，\n驳回",
    # Greetings and salutations never hide a negation
    "王经理：\n不同意，成本太高", "您好，暂不同意", "Hi Zhang,\nI agree with Bob's concerns",
    "不同意：\n延期 两周后再议", "NOT APPROVED,\nCONFIRM later",
    # Nothing meaningful at all
    "", "   \n\n", "您好！", "[External]",
]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_no_keyword(text: str) -> None:
    assert match(text) == KeywordMatch(None, text.strip())


AMBIGUOUS = [
    ("同意，需补充信息：BOM", ("agree", "need_info")),
    ("同意/驳回", ("agree", "reject")),
    ("同意 / 驳回", ("agree", "reject")),
    ("同意 驳回", ("agree", "reject")),
    ("AGREE / REJECT", ("agree", "reject")),
    ("AGREE REJECT", ("agree", "reject")),
    ("Agree, but NEED INFO on the BOM", ("agree", "need_info")),
    ("agree/reject", ("agree", "reject")),
    ("同意。签字确认", ("agree", "confirm")),
    ("【同意】【驳回】", ("agree", "reject")),
    ("您好，\n同意，延期：12月5日", ("agree", "delay")),
    ("同意，驳回，关闭", ("agree", "reject", "close")),
]


@pytest.mark.parametrize(("text", "actions"), AMBIGUOUS)
def test_ambiguous_first_line(text: str, actions: tuple[str, ...]) -> None:
    assert match(text) == KeywordMatch(None, text.strip(), actions)


def test_second_keyword_inside_a_clause_is_text() -> None:
    assert match("同意，但需补充信息：BOM") == KeywordMatch("agree", "但需补充信息：BOM")
    assert match("同意，进度没问题") == KeywordMatch("agree", "进度没问题")
    assert match("AGREE with the plan") == KeywordMatch("agree", "with the plan")


def test_keywords_may_be_any_sequence() -> None:
    assert match_keyword("延期：等报价", list(KEYWORDS)).action == "delay"
    assert match_keyword("同意", [k for k in KEYWORDS if k.action != "agree"]).action is None


COMMANDS = [
    ("帮助", Command("help", "")),
    ("HELP", Command("help", "")),
    ("help?", Command("help", "")),
    ("帮助？", Command("help", "")),
    ("Re: HELP", Command("help", "")),
    ("[HELP]", Command("help", "")),
    ("模板 项目协作", Command("template", "项目协作")),
    ("模板：客户需求", Command("template", "客户需求")),
    ("TEMPLATE project", Command("template", "project")),
    ("template: notice", Command("template", "notice")),
    ("模板", Command("template", "")),
    ("检索 成本", Command("search", "成本")),
    ("检索：成本", Command("search", "成本")),
    ("检索　成本　 合同", Command("search", "成本 合同")),
    ("【检索】续航", Command("search", "续航")),
    ("SEARCH battery supplier", Command("search", "battery supplier")),
    ("Search: battery", Command("search", "battery")),
    ("状态 PRJ-2026-0001", Command("status", "PRJ-2026-0001")),
    ("状态：ＰＲＪ－２０２６－０００１", Command("status", "PRJ-2026-0001")),
    ("STATUS PRJ-2026-0001", Command("status", "PRJ-2026-0001")),
    ("Status PRJ-2026-0001", Command("status", "PRJ-2026-0001")),
    ("订阅", Command("digest_on", "")),
    ("DIGEST ON", Command("digest_on", "")),
    ("digest on", Command("digest_on", "")),
    ("Digest-On", Command("digest_on", "")),
    ("退订", Command("digest_off", "")),
    ("DIGEST OFF", Command("digest_off", "")),
    ("回复：退订", Command("digest_off", "")),
    ("RE: 回复: Re[2]: 检索：成本", Command("search", "成本")),
    ("Re：状态 PRJ-2026-0001", Command("status", "PRJ-2026-0001")),
    ("[External] Re: STATUS CUS-2026-0007", Command("status", "CUS-2026-0007")),
    ("【外部邮件】帮助", Command("help", "")),
    ("  HELP  ", Command("help", "")),
]


@pytest.mark.parametrize(("subject", "command"), COMMANDS)
def test_command(subject: str, command: Command) -> None:
    assert parse_command(subject) == command


NOT_COMMANDS = [
    "", "Re:", "帮助文档更新", "状态更新", "模板更新通知", "检索系统升级", "订阅 服务续费", "退订通知",
    "Help needed with the invoice", "HELP desk migration", "Status update on the order",
    "Search engine optimisation project kickoff", "Template project", "DIGEST", "digest only weekly",
    "Fwd: HELP", "转发: 检索 成本", "[项目协作] 新品发布会筹备", "同意",
]


@pytest.mark.parametrize("subject", NOT_COMMANDS)
def test_not_a_command(subject: str) -> None:
    assert parse_command(subject) is None


IN_CONTEXT = [
    # What the mail answered asked for decides what a short answer means (issue 10)
    ("signoff", "同意", "confirm", ""), ("signoff", "OK", "confirm", ""), ("signoff", "同意，没有意见", "confirm", "没有意见"),
    ("signoff", "驳回：成本过高", "reject", "成本过高"), ("signoff", "同意需求", "agree", ""),
    ("notice", "收到", "confirm", ""), ("notice", "确认收到", "confirm", ""), ("notice", "收到，准时参加", "confirm", "准时参加"),
    ("notice", "已阅。", "confirm", ""), ("notice", "Noted, thanks", "confirm", "thanks"),
    ("request", "OK", "agree", ""), ("request", "好的，周五前给评估", "agree", "周五前给评估"),
    ("request", "收到，马上处理。\n进度：BOM 已完成 80%", "progress", "收到，马上处理。\nBOM 已完成 80%"),
    # Negations and questions stay what they are in every context
    ("signoff", "不同意", None, "不同意"), ("notice", "未收到附件", None, "未收到附件"),
    ("request", "OK?", None, "OK?"), ("signoff", "我们不同意\n确认", None, "我们不同意\n确认"),
]


@pytest.mark.parametrize(("context", "text", "action", "rest"), IN_CONTEXT)
def test_a_short_answer_means_what_its_context_asked_for(context: str, text: str, action: str | None, rest: str):
    assert match_keyword(text, KEYWORDS, CONTEXTS[context].words) == KeywordMatch(action, rest)


def test_outside_its_context_a_context_word_is_an_ordinary_word():
    assert match("收到").action is None and match("OK").action is None
    assert match("同意").action == "agree"  # a keyword everywhere; only a sign-off makes it a signature
