"""A seeded template grammar of simple Mandarin sentences (offline text for the mini_zh corpus).

Sentences are written in simplified Chinese characters only, normalised as AISHELL's
transcripts (no spaces, no punctuation, numbers spelt in characters), 4-16 characters long,
built from a few hundred common words: purchases ("他昨天买了五本书"), commands
("请把蓝色的杯子放在桌子上"), trips, activities, clock times, dates, prices, weather and
questions. Measure words agree with their nouns, and two before a measure word is 两. The same
seed always gives the same sentences in the same order.
"""

from __future__ import annotations

import random

MIN_CHARS, MAX_CHARS = 4, 16

DIGITS = "零一二三四五六七八九"
COLOURS = "红色 蓝色 绿色 黄色 黑色 白色 紫色 粉色 灰色 橙色 棕色 金色 银色".split()
ADJECTIVES = "大 小 新 旧 长 短 高 矮 干净 漂亮 便宜 好看 可爱 重 轻".split()
DEGREES = "很 非常 特别 比较 有点 真".split()
# measure word -> nouns that take it
MEASURED = {
    "个": "杯子 苹果 盒子 箱子 书包 皮球 手机 瓶子 碗 盘子 西瓜 橘子 面包 鸡蛋 电脑 本子 灯 钟".split(),
    "本": "书 杂志 词典 小说 画册 日记".split(),
    "张": "桌子 纸 照片 地图 票 床 画 卡片".split(),
    "把": "椅子 伞 钥匙 刀 尺子 梳子 勺子 剪刀".split(),
    "只": "猫 狗 鸟 鸭子 兔子 老虎 狮子 猴子 鸡 羊".split(),
    "条": "鱼 裤子 裙子 毛巾 围巾 绳子 狗 船".split(),
    "件": "衣服 衬衫 外套 毛衣 礼物 事情".split(),
    "辆": "汽车 自行车 卡车 公共汽车 出租车".split(),
    "双": "鞋 筷子 袜子 手套".split(),
    "朵": "花 云".split(),
    "块": "蛋糕 石头 手表 肥皂 糖 巧克力".split(),
    "杯": "水 茶 咖啡 牛奶 果汁".split(),
    "支": "笔 铅笔 牙刷 蜡烛".split(),
}
OBJECTS = sorted({n for nouns in MEASURED.values() for n in nouns if n not in ("事情", "云")})
PEOPLE = ("我 你 他 她 我们 你们 他们 老师 学生 医生 妈妈 爸爸 哥哥 姐姐 弟弟 妹妹 爷爷 奶奶 "
          "朋友 同学 小王 小李 小张 老刘 司机 经理 孩子 邻居 护士 警察 工人 阿姨 叔叔").split()  # fmt: skip
CITIES = "北京 上海 广州 深圳 杭州 南京 成都 武汉 西安 天津 重庆 长沙 青岛 苏州 昆明 厦门".split()
PLACES = ("学校 医院 公园 商店 超市 银行 车站 机场 图书馆 饭店 办公室 公司 市场 博物馆 电影院 "
          "火车站 体育馆 邮局 书店 动物园 海边 家").split()  # fmt: skip
SPOTS = "桌子 椅子 床 柜子 箱子 盒子 沙发 书架 窗台 门口 冰箱 车".split()
SIDES = "上 里 下 旁边 后面 前面".split()
TIMES = ("今天 明天 昨天 后天 前天 早上 上午 中午 下午 晚上 今年 明年 去年 周末 现在 刚才 以后 "
         "每天 今天晚上 明天早上 昨天下午").split()  # fmt: skip
WEEKDAYS = [f"星期{d}" for d in "一二三四五六天"]
BUY_VERBS = "买 卖 找 拿 洗 借 送 要 修 带 画 收到 喜欢 需要 看见".split()
PUT_VERBS = "放在 挂在 留在 藏在 摆在".split()
TAKE_VERBS = "拿来 拿走 带走 洗干净 收起来 送给我 找出来".split()
ACTIVITIES = ("看书 工作 学习 吃饭 休息 买东西 等人 开会 上课 打球 唱歌 跳舞 睡觉 写字 画画 "
              "喝茶 看电影 做饭 跑步 游泳 散步 聊天").split()  # fmt: skip
TRANSPORT = {"坐": "火车 飞机 地铁 出租车 公共汽车 船".split(), "骑": "自行车 马 摩托车".split(),
             "开": "车 卡车".split()}  # fmt: skip
WEATHER = "天气很好 下雨了 下雪了 刮大风 很冷 很热 是晴天 是阴天 有雾 很暖和 很凉快".split()


def number_chars(n: int) -> str:
    """0..999 in characters as spoken: 7 -> 七, 15 -> 十五, 42 -> 四十二, 305 -> 三百零五."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_chars supports 0..999, got {n}")
    if n < 10:
        return DIGITS[n]
    hundreds, rest = divmod(n, 100)
    tens, unit = divmod(rest, 10)
    out = ""
    if hundreds:
        out = DIGITS[hundreds] + "百"
        if rest == 0:
            return out
        if tens == 0:
            return out + "零" + DIGITS[unit]
        out += DIGITS[tens] + "十"  # 一百一十, not 一百十
    else:
        out = ("" if tens == 1 else DIGITS[tens]) + "十"  # 十五, not 一十五
    return out + (DIGITS[unit] if unit else "")


def count_chars(n: int) -> str:
    """A count before a measure word: 2 is 两 (两本书), otherwise :func:`number_chars`."""
    return "两" if n == 2 else number_chars(n)


def _opt(r: random.Random, words: list[str], p: float) -> str:
    return r.choice(words) if r.random() < p else ""


def _count(r: random.Random) -> int:
    return r.randint(1, 10) if r.random() < 0.7 else r.randint(11, 99)


def _counted(r: random.Random) -> str:
    """三本红色的书 / 两杯茶 / 一个苹果."""
    measure = r.choice(list(MEASURED))
    noun = r.choice(MEASURED[measure])
    colour = _opt(r, COLOURS, 0.3) if measure != "杯" and noun != "事情" else ""
    return f"{count_chars(_count(r))}{measure}{colour + '的' if colour else ''}{noun}"


def _thing(r: random.Random) -> str:
    """蓝色的杯子 / 新杯子 / 杯子."""
    noun = r.choice(OBJECTS)
    kind = r.random()
    if kind < 0.4:
        return f"{r.choice(COLOURS)}的{noun}"
    if kind < 0.55:
        return f"{r.choice(ADJECTIVES)}{noun}"
    return noun


def _buy(r: random.Random) -> str:
    when = _opt(r, TIMES, 0.5)
    return f"{r.choice(PEOPLE)}{when}{r.choice(BUY_VERBS)}了{_counted(r)}"


def _put(r: random.Random) -> str:
    please = r.choice(["请", "", "你"])
    return f"{please}把{_thing(r)}{r.choice(PUT_VERBS)}{r.choice(SPOTS)}{r.choice(SIDES)}"


def _take(r: random.Random) -> str:
    return f"{r.choice(['请', '请你', '麻烦你'])}把{_thing(r)}{r.choice(TAKE_VERBS)}"


def _have(r: random.Random) -> str:
    place = _opt(r, [f"{s}{d}" for s in SPOTS for d in ("上", "里")], 0.4)
    who = "" if place else r.choice(PEOPLE)
    return f"{place}{who}{r.choice(['有', '没有'] if who else ['有'])}{_counted(r)}"


def _trip(r: random.Random) -> str:
    who, when = r.choice(PEOPLE), r.choice(TIMES + WEEKDAYS)
    dest = r.choice(CITIES + PLACES)
    if r.random() < 0.4:
        verb = r.choice(list(TRANSPORT))
        return f"{who}{when}{verb}{r.choice(TRANSPORT[verb])}去{dest}"
    return (
        f"{who}{when}{r.choice(['去', '回', '到', '要去', '想去'])}{dest}{_opt(r, ACTIVITIES, 0.3)}"
    )


def _doing(r: random.Random) -> str:
    where = r.choice(PLACES + CITIES)
    return f"{r.choice(PEOPLE)}{_opt(r, TIMES, 0.4)}{r.choice(['在', '想在', '不在'])}{where}{r.choice(ACTIVITIES)}"


def _describe(r: random.Random) -> str:
    owner = _opt(r, PEOPLE + CITIES + PLACES, 0.5)
    noun = r.choice(OBJECTS)
    return f"{owner + '的' if owner else '这个'}{noun}{r.choice(DEGREES)}{r.choice(ADJECTIVES)}"


def _clock(r: random.Random) -> str:
    hour = r.randint(1, 12)
    minute = r.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, r.randint(1, 59)])
    hour_s = "两" if hour == 2 else number_chars(hour)
    mins = "" if minute == 0 else ("半" if minute == 30 and r.random() < 0.5 else
                                   ("零" if minute < 10 else "") + number_chars(minute) + "分")  # fmt: skip
    part = _opt(r, ["早上", "上午", "下午", "晚上"], 0.6)
    if r.random() < 0.5:
        return f"现在是{part}{hour_s}点{mins}"
    return f"{r.choice(PEOPLE)}{part}{hour_s}点{mins}{r.choice(ACTIVITIES)}"


def _date(r: random.Random) -> str:
    month, day = r.randint(1, 12), r.randint(1, 31)
    when = r.choice(["今天是", "明天是", "昨天是", "我们"])
    tail = r.choice(WEEKDAYS) if when.endswith("是") and r.random() < 0.5 else ""
    if when == "我们":
        tail = r.choice(["见面", "出发", "开会", "回家", "考试"])
    return f"{when}{number_chars(month)}月{number_chars(day)}号{tail}"


def _price(r: random.Random) -> str:
    measure = r.choice(list(MEASURED))
    noun = r.choice(MEASURED[measure])
    price = r.randint(1, 99) if r.random() < 0.7 else r.randint(100, 999)
    money = f"{'两' if price == 2 else number_chars(price)}块{_opt(r, ['钱'], 0.5)}"
    if r.random() < 0.3:
        return f"这{measure}{noun}多少钱"
    return f"这{measure}{noun}{money}"


def _weather(r: random.Random) -> str:
    return f"{r.choice(TIMES + WEEKDAYS)}{_opt(r, CITIES, 0.6)}{r.choice(WEATHER)}"


def _question(r: random.Random) -> str:
    kind = r.randrange(4)
    who = r.choice(PEOPLE)
    if kind == 0:
        return f"{who}{r.choice(TIMES + WEEKDAYS)}去哪里"
    if kind == 1:
        measure = r.choice(list(MEASURED))
        return f"{who}有几{measure}{r.choice(MEASURED[measure])}"
    if kind == 2:
        return f"{who}{_opt(r, TIMES, 0.5)}去{r.choice(CITIES + PLACES)}吗"
    return f"{_thing(r)}在哪里"


def _phone(r: random.Random) -> str:
    # digits read one by one, 1 as 幺 as in phone numbers
    n = "".join(r.choice("幺二三四五六七八九零") for _ in range(r.randint(4, 8)))
    return f"{r.choice(['我的电话是', '房间号是', '号码是', '请打'])}{n}"


TEMPLATES = (_buy, _put, _take, _have, _trip, _doing, _describe, _clock, _date, _price,
             _weather, _question, _phone)  # fmt: skip


def vocabulary() -> set[str]:
    """Every character the grammar can produce."""
    groups = [COLOURS, ADJECTIVES, DEGREES, OBJECTS, PEOPLE, CITIES, PLACES, SPOTS, SIDES, TIMES,
              WEEKDAYS, BUY_VERBS, PUT_VERBS, TAKE_VERBS, ACTIVITIES, WEATHER, list(MEASURED),
              [n for nouns in MEASURED.values() for n in nouns], list(TRANSPORT),
              [n for nouns in TRANSPORT.values() for n in nouns], [DIGITS, "十百两幺"]]  # fmt: skip
    chars = {c for group in groups for word in group for c in word}
    chars.update("请把你麻烦有没了去回到要想在不的这个是点分半早上下午晚月号见面出发开会家考试"
                 "块钱多少几哪里吗我电话房间码打现")  # fmt: skip
    return chars


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences (4-16 characters, no spaces), reproducible from `seed`."""
    r = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"the grammar cannot produce {n} distinct sentences")
        sentence = r.choice(TEMPLATES)(r)
        if MIN_CHARS <= len(sentence) <= MAX_CHARS and sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out
