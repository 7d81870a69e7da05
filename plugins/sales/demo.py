"""Demo data for ``guanxi demo`` (registered as the demo data ``sales``).

The company is the one of the design document: a trade-media house for the food-and-drink
industry that sells periodical subscriptions, web and outdoor advertising, and booth
agency at trade fairs, through three regional sales teams (华东, 华南, 华北).

``demo(engine, size, seed, progress)`` fills an empty database and returns the persona
logins (username, name, role, team, password) for the ``guanxi demo`` command to print
once. The same seed gives the same data; every date is relative to ``engine.now()``.

- ``small``: teams and a persona for every role; about 120 customers with branches and
  contacts across regions (about 5% key customers) and a shared pool; one hero group
  customer (:data:`HERO_NAME`) with branches, five contacts, purchases in all three
  product lines and an overdue instalment; opportunities in every stage with their
  workflow history (one rotten, one lost to a competitor, one reopened); a duplicate pair
  (:data:`DUPLICATE_NAMES`); contracts with instalments, orders and payments over two
  years; activities and tasks, some overdue.
- ``large``: the same, plus :data:`LARGE_CUSTOMERS` customers and :data:`LARGE_ORDERS`
  orders (an amount each, no lines) written through ``create_many``, for benchmarks.

How the past is written: history is made the way it would have been made - people create
records and fire transitions through the record API and the workflow runtime, each as the
persona who would have done it - while the engine's injectable clock (``Engine.clock``)
is set to the moment it happened, so ``created_at``, workflow events, audit entries and
confirmations carry past times. The clock is restored afterwards. ``guanxi demo`` runs
on its own, before the server, so nothing else sees the moved clock.

The small data set is one transaction: written completely or not at all (``large`` writes
its volume in a second one, see :meth:`_Demo.run`). A run refuses a database that already
holds customers or a persona's username (ConflictError), so it never mixes demo records
into real ones and a second run changes nothing.
"""

from __future__ import annotations

import bisect
import random
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from guanxi.engine import SYSTEM, Actor, ConflictError, FieldProblem, Money, ValidationError

from .pipeline import local_today

#: The hero customer: a group with branches, five contacts, every product line, arrears.
HERO_NAME = "金穗食品集团股份有限公司"
#: The same company entered twice by two salespeople (查重 finds them).
DUPLICATE_NAMES = ("金坛酒业有限公司", "金坛酒业")
#: What ``large`` adds to the small data set.
LARGE_CUSTOMERS = 100_000
LARGE_ORDERS = 1_000_000
#: How far back the history goes.
HISTORY_DAYS = 730
CENT = Decimal("0.01")
#: Passwords are 12 of these: easy to type, nothing to confuse (no 0/O, 1/l/I).
PASSWORD_LETTERS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class Persona:
    username: str
    name: str
    role: str
    team: str | None
    title: str


#: Teams: (name, parent).
TEAMS = (
    ("销售中心", None),
    ("华东销售部", "销售中心"),
    ("华南销售部", "销售中心"),
    ("华北销售部", "销售中心"),
    ("财务部", None),
)
#: The region each sales team works.
TEAM_REGIONS = {"华东销售部": "华东", "华南销售部": "华南", "华北销售部": "华北"}

PERSONAS = (
    Persona("chen.jing", "陈静", "admin", None, "系统管理员"),
    Persona("wang.jianguo", "王建国", "executive", None, "总经理"),
    Persona("xu.fang", "徐芳", "finance", "财务部", "财务主管"),
    Persona("zhou.min", "周敏", "sales_supervisor", "华东销售部", "华东销售总监"),
    Persona("liu.yang", "刘洋", "customer_manager", "华东销售部", "客户经理"),
    Persona("sun.li", "孙丽", "customer_manager", "华东销售部", "客户经理"),
    Persona("huang.wei", "黄伟", "sales_supervisor", "华南销售部", "华南销售总监"),
    Persona("lin.hao", "林浩", "customer_manager", "华南销售部", "客户经理"),
    Persona("he.xiaomei", "何晓梅", "customer_manager", "华南销售部", "客户经理"),
    Persona("zhao.lei", "赵磊", "sales_supervisor", "华北销售部", "华北销售总监"),
    Persona("ma.qiang", "马强", "customer_manager", "华北销售部", "客户经理"),
    Persona("guo.jing", "郭静", "customer_manager", "华北销售部", "客户经理"),
)
ADMIN, FINANCE = "chen.jing", "xu.fang"
HERO_OWNER = "liu.yang"


@dataclass(frozen=True)
class City:
    name: str
    pinyin: str
    area_code: str
    province: str


def _cities(*rows: tuple[str, str, str, str]) -> tuple[City, ...]:
    return tuple(City(*row) for row in rows)


#: Cities by region; 西南 and 华中 have no sales team yet - their customers sit in the pool.
REGIONS: dict[str, tuple[City, ...]] = {
    "华东": _cities(
        ("上海", "shanghai", "021", "上海市"),
        ("杭州", "hangzhou", "0571", "浙江省"),
        ("宁波", "ningbo", "0574", "浙江省"),
        ("绍兴", "shaoxing", "0575", "浙江省"),
        ("南京", "nanjing", "025", "江苏省"),
        ("苏州", "suzhou", "0512", "江苏省"),
        ("无锡", "wuxi", "0510", "江苏省"),
        ("济南", "jinan", "0531", "山东省"),
        ("青岛", "qingdao", "0532", "山东省"),
        ("烟台", "yantai", "0535", "山东省"),
        ("合肥", "hefei", "0551", "安徽省"),
    ),
    "华南": _cities(
        ("广州", "guangzhou", "020", "广东省"),
        ("深圳", "shenzhen", "0755", "广东省"),
        ("佛山", "foshan", "0757", "广东省"),
        ("东莞", "dongguan", "0769", "广东省"),
        ("汕头", "shantou", "0754", "广东省"),
        ("厦门", "xiamen", "0592", "福建省"),
        ("福州", "fuzhou", "0591", "福建省"),
        ("泉州", "quanzhou", "0595", "福建省"),
        ("南宁", "nanning", "0771", "广西壮族自治区"),
        ("海口", "haikou", "0898", "海南省"),
    ),
    "华北": _cities(
        ("北京", "beijing", "010", "北京市"),
        ("天津", "tianjin", "022", "天津市"),
        ("石家庄", "shijiazhuang", "0311", "河北省"),
        ("保定", "baoding", "0312", "河北省"),
        ("唐山", "tangshan", "0315", "河北省"),
        ("太原", "taiyuan", "0351", "山西省"),
        ("大同", "datong", "0352", "山西省"),
        ("呼和浩特", "huhehaote", "0471", "内蒙古自治区"),
        ("包头", "baotou", "0472", "内蒙古自治区"),
    ),
    "西南": _cities(
        ("成都", "chengdu", "028", "四川省"),
        ("宜宾", "yibin", "0831", "四川省"),
        ("重庆", "chongqing", "023", "重庆市"),
        ("贵阳", "guiyang", "0851", "贵州省"),
        ("昆明", "kunming", "0871", "云南省"),
    ),
    "华中": _cities(
        ("武汉", "wuhan", "027", "湖北省"),
        ("长沙", "changsha", "0731", "湖南省"),
        ("郑州", "zhengzhou", "0371", "河南省"),
    ),
}
#: Two-character brand names are made of these (character, pinyin).
BRAND_CHARS = tuple(
    zip(
        "金华瑞丰鑫源恒福康嘉禾裕盛泰润宏达永天和美绿宝佳旺顺兴隆德益安鼎锦汇欣川",
        "jin hua rui feng xin yuan heng fu kang jia he yu sheng tai run hong da yong tian he "
        "mei lv bao jia wang shun xing long de yi an ding jin hui xin chuan".split(),
        strict=True,
    )
)
#: What the company makes: (name part, pinyin, industry).
TRADES = (
    ("食品", "shipin", "食品加工"),
    ("酒业", "jiuye", "白酒"),
    ("酿酒", "niangjiu", "白酒"),
    ("啤酒", "pijiu", "啤酒"),
    ("葡萄酒", "putaojiu", "葡萄酒"),
    ("乳业", "ruye", "乳制品"),
    ("饮品", "yinpin", "饮料"),
    ("饮料", "yinliao", "饮料"),
    ("调味品", "tiaoweipin", "调味品"),
    ("酿造", "niangzao", "调味品"),
    ("茶业", "chaye", "茶叶"),
    ("粮油", "liangyou", "粮油"),
    ("肉类食品", "rouleishipin", "肉制品"),
    ("烘焙", "hongbei", "烘焙食品"),
    ("冷冻食品", "lengdongshipin", "速冻食品"),
    ("休闲食品", "xiuxianshipin", "休闲食品"),
)
LEGAL_FORMS = ("有限公司", "有限公司", "股份有限公司", "有限责任公司")
SOURCES = ("展会", "网站咨询", "电话营销", "客户介绍", "行业协会", "期刊读者")
DISTRICTS = ("经济技术开发区", "高新区", "工业园区", "食品产业园", "新区", "城南区")
ROADS = ("人民路", "建设路", "解放路", "工业大道", "创业路", "文化路", "滨江路", "长江路")
SURNAMES = tuple(
    zip(
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹",
        "wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo "
        "zheng liang xie song tang xu han feng deng cao".split(),
        strict=True,
    )
)
#: Given names: (name, pinyin, gender).
GIVEN_NAMES = (
    ("伟", "wei", "male"),
    ("芳", "fang", "female"),
    ("娜", "na", "female"),
    ("秀英", "xiuying", "female"),
    ("敏", "min", "female"),
    ("静", "jing", "female"),
    ("丽", "li", "female"),
    ("强", "qiang", "male"),
    ("磊", "lei", "male"),
    ("军", "jun", "male"),
    ("洋", "yang", "male"),
    ("勇", "yong", "male"),
    ("艳", "yan", "female"),
    ("杰", "jie", "male"),
    ("涛", "tao", "male"),
    ("明", "ming", "male"),
    ("超", "chao", "male"),
    ("霞", "xia", "female"),
    ("建华", "jianhua", "male"),
    ("志强", "zhiqiang", "male"),
    ("海燕", "haiyan", "female"),
    ("晓东", "xiaodong", "male"),
    ("丽娟", "lijuan", "female"),
    ("文博", "wenbo", "male"),
    ("雪梅", "xuemei", "female"),
    ("国平", "guoping", "male"),
)
TITLES = ("总经理", "副总经理", "市场总监", "品牌经理", "采购经理", "市场部经理", "销售总监")
TITLES += ("行政主管", "电商负责人", "董事长助理")
MOBILE_PREFIXES = ("135", "136", "137", "138", "139", "150", "151", "158", "186", "187", "188")

#: The catalogue: (code, name, category, unit, price, active).
PRODUCTS = (
    ("SUB-01", "《中国食品报道》年度订阅", "subscription", "份/年", "480.00", True),
    ("SUB-02", "《酒业周刊》年度订阅", "subscription", "份/年", "360.00", True),
    ("SUB-03", "《饮料与乳品》电子版年度订阅", "subscription", "账号/年", "240.00", True),
    ("SUB-04", "食品行业数据库年度会员", "subscription", "账号/年", "6800.00", True),
    ("ADV-W1", "行业网站首页通栏广告", "advertising", "月", "12000.00", True),
    ("ADV-W2", "资讯频道按钮广告", "advertising", "月", "3500.00", True),
    ("ADV-P1", "期刊整版彩页广告", "advertising", "期", "8000.00", True),
    ("ADV-P0", "期刊黑白内页广告(已停售)", "advertising", "期", "2500.00", False),
    ("ADV-O1", "高速公路户外广告牌", "advertising", "季度", "60000.00", True),
    ("ADV-O2", "地铁站灯箱广告", "advertising", "月", "18000.00", True),
    ("EXPO-01", "全国糖酒商品交易会标准展位代理", "expo_agency", "个(9㎡)", "15000.00", True),
    ("EXPO-02", "国际食品饮料博览会特装展位代理", "expo_agency", "㎡", "1800.00", True),
    ("EXPO-03", "海外食品展团组代理", "expo_agency", "个", "45000.00", True),
    ("SRV-01", "展台设计与搭建", "service", "项", "20000.00", True),
    ("SRV-02", "细分市场调研报告", "service", "份", "8800.00", True),
)
#: What a deal of each business type buys: (product code, lowest, highest quantity).
BASKETS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "subscription": (("SUB-01", 10, 60), ("SUB-02", 5, 40), ("SUB-03", 5, 30), ("SUB-04", 1, 3)),
    "advertising": (
        ("ADV-W1", 3, 12),
        ("ADV-W2", 3, 12),
        ("ADV-P1", 2, 12),
        ("ADV-O1", 1, 4),
        ("ADV-O2", 1, 6),
    ),
    "expo_agency": (("EXPO-01", 1, 6), ("EXPO-02", 36, 108), ("EXPO-03", 1, 2), ("SRV-01", 1, 1)),
}
COMPETITORS = (
    ("糖酒快讯传媒", "糖酒会展位代理价格低，华南地区渠道强。"),
    ("食品商务网", "网络广告按点击计费，中小客户多。"),
    ("华食会展服务有限公司", "专做海外展团组。"),
    ("中酒传媒集团", "白酒行业期刊与户外广告。"),
)
#: Activity subjects by kind.
SUBJECTS = {
    "call": ("电话沟通年度投放计划", "电话回访订阅续订意向", "确认展位需求", "电话跟进回款进度"),
    "visit": ("上门拜访市场部", "拜访采购经理介绍刊例", "参观工厂并了解新品上市计划"),
    "meeting": ("年度合作洽谈会", "方案讲解会", "展会现场洽谈"),
    "email": ("发送刊例及报价", "邮件发送展位平面图", "发送合同草稿"),
    "note": ("客户反馈今年预算收紧", "竞品报价较低，需跟进", "客户有意加投户外广告"),
}
OUTCOMES = (
    "客户有意向，等待内部审批",
    "需补充案例资料",
    "对价格敏感",
    "同意安排下次会谈",
    "已确认需求",
)
TASKS = (
    "寄送新一年刊例",
    "确认展位平面图",
    "准备年度投放方案",
    "整理客户反馈",
    "预约拜访市场总监",
    "更新联系人资料",
    "催收回款",
)


# -- entry point ------------------------------------------------------------------------------
def demo(engine: Any, size: str, seed: int, progress: Callable[..., None]) -> list[dict[str, str]]:
    """Fill an empty database with the demo company; return the persona logins.

    The passwords are random and stored only as hashes: the returned rows are the only
    place they appear (``guanxi demo`` prints them once).
    """
    if size not in ("small", "large"):
        raise ValidationError(FieldProblem("demo", "size", f"must be small or large, not {size!r}"))
    refuse_if_filled(engine)
    builder = _Demo(engine, seed, progress, large=size == "large")
    return builder.run()


def refuse_if_filled(engine: Any) -> None:
    """ConflictError when the database already holds customers or a persona's username."""
    with engine.records.transaction():
        customers = engine.records.scoped_query("Customer", include_deleted=True).count()
        names = [p.username for p in PERSONAS]
        taken = sorted(
            u.username
            for u in engine.records.scoped_query("User", include_deleted=True).filter(
                "lambda u: u.username in names", {}, {"names": names}
            )
        )
    if customers or taken:
        held = f"{customers} customer(s)" if customers else f"the user(s) {', '.join(taken)}"
        raise ConflictError(
            f"the database already holds {held}: guanxi demo fills an empty database only "
            "and has changed nothing; point GUANXI_HOME (or GUANXI_DATABASE_URL) at a new "
            "one to try the demo"
        )


# -- the builder ------------------------------------------------------------------------------
@dataclass
class _Customer:
    """What the builder knows of a customer it planned (and, once written, its id)."""

    values: dict[str, Any]
    owner: str | None
    region: str
    city: City
    created: date
    domain: str
    level: str = "ordinary"
    id: int = 0
    contacts: list[int] = field(default_factory=list)
    interests: tuple[str, ...] = ()
    #: the day of its latest activity so far
    last_logged: date | None = None


@dataclass
class _Deal:
    """An opportunity being written: its record id, owner, customer and basket."""

    id: int
    owner: str
    customer: _Customer
    business_type: str
    lines: list[tuple[str, int]]
    amount: Decimal


class _Demo:
    def __init__(self, engine: Any, seed: int, progress: Callable[..., None], *, large: bool):
        self.engine = engine
        self.records = engine.records
        self.rng = random.Random(f"guanxi-demo:{seed}")
        self.progress = progress
        self.large = large
        self.now: datetime = engine.now()
        self.today: date = local_today(engine)
        self.tz = engine.config.tz
        self.currency: str = engine.config.currency
        self.start = self.today - timedelta(days=HISTORY_DAYS)
        self.teams: dict[str, int] = {}
        self.user_ids: dict[str, int] = {}
        self.actors: dict[str, Actor] = {}
        self.products: dict[str, Any] = {}
        self.competitors: list[int] = []
        self.customers: list[_Customer] = []
        self.hero_customer: _Customer | None = None
        self.names_used: set[str] = set()
        self.numbers_used: set[str] = set()
        self.emails_used: set[str] = set()
        self.invoice_seq = 0
        self.steps_done = 0

    # -- running ----------------------------------------------------------------------------
    STEPS = (
        "organisation",
        "catalogue",
        "book",
        "hero",
        "duplicates",
        "pipeline",
        "contracts",
        "orders",
        "activities",
        "tasks",
        "arrears",
    )

    def run(self) -> list[dict[str, str]]:
        small_weight = len(self.STEPS)
        total = small_weight + (LARGE_CUSTOMERS + LARGE_ORDERS if self.large else 0)
        self.progress(0, total)
        with self.records.transaction(write=True):
            logins = self.organisation()
            self._step(total)
            for step in self.STEPS[1:]:
                getattr(self, step)()
                self._step(total)
        if self.large:
            # A transaction of its own: create_many writes rows with plain SQL, which the
            # ORM would take for phantoms of the collections of users created above in
            # the same session (Pony's UnrepeatableReadError).
            with self.records.transaction(write=True):
                self.bulk(total)
        return logins

    def _step(self, total: int) -> None:
        self.steps_done += 1
        self.progress(self.steps_done, total)

    # -- time -------------------------------------------------------------------------------
    def local(self, day: date, hour: int = 10, minute: int = 0) -> datetime:
        """``day`` at ``hour:minute`` in the installation's zone, as naive UTC."""
        local = datetime.combine(day, time(hour, minute), tzinfo=self.tz)
        return local.astimezone(UTC).replace(tzinfo=None)

    def moment(self, day: date, hour: int = 10, minute: int = 0) -> datetime:
        """When something happened: :meth:`local`, but never later than now."""
        return min(self.local(day, hour, minute), self.now)

    def days_ago(self, days: int) -> date:
        return self.today - timedelta(days=days)

    @contextmanager
    def at(self, when: datetime) -> Iterator[None]:
        """Write as if it were ``when`` (at most now): set the engine's clock, then restore."""
        saved = self.engine.clock
        moment = min(when, self.now)
        self.engine.clock = lambda: moment
        try:
            yield
        finally:
            self.engine.clock = saved

    def actor(self, who: str | None) -> Actor:
        return SYSTEM if who is None else self.actors[who]

    def create(self, entity: str, data: dict[str, Any], who: str | None, when: datetime, **kw):
        with self.at(when):
            return self.records.create(entity, data, actor=self.actor(who), **kw)

    def update(self, entity: str, rid: int, data: dict[str, Any], who: str | None, when):
        with self.at(when):
            return self.records.update(entity, rid, data, actor=self.actor(who))

    def fire(self, rid: int, trigger: str, who: str, when: datetime, **payload: Any):
        with self.at(when):
            return self.engine.runtime.fire_transition(
                "Opportunity", rid, trigger, self.actor(who), payload=payload
            )

    def money(self, amount: Decimal | str | int) -> Money:
        return Money(Decimal(amount).quantize(CENT, ROUND_HALF_UP), self.currency)

    # -- people -----------------------------------------------------------------------------
    def organisation(self) -> list[dict[str, str]]:
        when = self.moment(self.start - timedelta(days=30), 9)
        logins = []
        with self.at(when):
            for name, parent in TEAMS:
                team = self.records.create(
                    "Team", {"name": name, "parent": self.teams.get(parent) if parent else None}
                )
                self.teams[name] = team.id
            for p in PERSONAS:
                password = "".join(secrets.choice(PASSWORD_LETTERS) for _ in range(12))
                user = self.engine.auth.create_user(
                    p.username,
                    password=password,
                    roles=[p.role],
                    team=p.team,
                    display_name=f"{p.name}({p.title})",
                    email=f"{p.username}@example.com",
                )
                self.user_ids[p.username] = user.id
                logins.append(
                    {
                        "username": p.username,
                        "name": p.name,
                        "role": p.role,
                        "team": p.team or "-",
                        "password": password,
                    }
                )
        for username, uid in self.user_ids.items():
            self.actors[username] = self.engine.auth.actor_for(uid)
        return logins

    def managers(self, team: str | None = None) -> list[str]:
        return [
            p.username
            for p in PERSONAS
            if p.role == "customer_manager" and (team is None or p.team == team)
        ]

    def supervisor(self, team: str) -> str:
        return next(p.username for p in PERSONAS if p.role == "sales_supervisor" and p.team == team)

    def team_of(self, username: str) -> str:
        return next(p.team for p in PERSONAS if p.username == username) or ""

    # -- catalogue --------------------------------------------------------------------------
    def catalogue(self) -> None:
        when = self.moment(self.start - timedelta(days=29), 10)
        with self.at(when):
            for code, name, category, unit, price, active in PRODUCTS:
                self.products[code] = self.records.create(
                    "Product",
                    {
                        "code": code,
                        "name": name,
                        "category": category,
                        "unit": unit,
                        "price": self.money(price),
                        "active": active,
                    },
                    actor=self.actor(ADMIN),
                )
            for name, notes in COMPETITORS:
                record = self.records.create(
                    "Competitor", {"name": name, "notes": notes}, actor=self.actor(ADMIN)
                )
                self.competitors.append(record.id)

    # -- customers --------------------------------------------------------------------------
    def unique_number(self, make: Callable[[], str]) -> str:
        while True:
            number = make()
            if number not in self.numbers_used:
                self.numbers_used.add(number)
                return number

    def landline(self, city: City) -> str:
        digits = self.unique_number(lambda: str(self.rng.randint(20_000_000, 89_999_999)))
        return f"{city.area_code}-{digits}"

    def mobile(self) -> str:
        rng = self.rng
        return self.unique_number(
            lambda: rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
        )

    def email(self, name: str, domain: str) -> str:
        address, number = f"{name}@{domain}", 1
        while address in self.emails_used:
            number += 1
            address = f"{name}{number}@{domain}"
        self.emails_used.add(address)
        return address

    def address(self, city: City) -> str:
        rng = self.rng
        town = "" if city.province == city.name + "市" else city.name + "市"
        street = f"{rng.choice(DISTRICTS)}{rng.choice(ROADS)}{rng.randint(1, 399)}号"
        return city.province + town + street

    def plan_customer(
        self, region: str, owner: str | None, created: date, level: str = "ordinary"
    ) -> _Customer:
        rng = self.rng
        while True:
            city = rng.choice(REGIONS[region])
            first, second = rng.sample(range(len(BRAND_CHARS)), 2)
            trade = rng.randrange(len(TRADES))
            brand = BRAND_CHARS[first][0] + BRAND_CHARS[second][0]
            key = f"{city.name}{brand}{TRADES[trade][0]}"
            if key not in self.names_used:
                self.names_used.add(key)
                break
        brand_py = BRAND_CHARS[first][1] + BRAND_CHARS[second][1]
        trade_name, trade_py, industry = TRADES[trade]
        domain = f"{city.pinyin}-{brand_py}{trade_py}.cn"
        values = {
            "name": f"{city.name}{brand}{trade_name}{rng.choice(LEGAL_FORMS)}",
            "short_name": f"{brand}{trade_name}",
            "industry": industry,
            "region": region,
            "level": level,
            "credit_rating": rng.randint(2, 5),
            "source": rng.choice(SOURCES),
            "address": self.address(city),
            "phone": self.landline(city),
            "website": f"www.{domain}",
        }
        if owner is not None and rng.random() < 0.6:
            values["satisfaction"] = rng.randint(3, 5)
        interests = tuple(
            sorted(rng.sample(("subscription", "advertising", "expo_agency"), rng.randint(1, 3)))
        )
        return _Customer(values, owner, region, city, created, domain, level, interests=interests)

    def book(self) -> None:
        """Each team's book of customers, and the pool."""
        rng = self.rng
        planned: list[_Customer] = []
        for team, region in TEAM_REGIONS.items():
            owners = [self.supervisor(team)] * 2
            for manager in self.managers(team):
                owners += [manager] * 14
            for index, owner in enumerate(owners):
                # a third of each book is old business, the rest came over two years
                if index % 3 == 0:
                    created = self.start + timedelta(days=rng.randint(0, 60))
                else:
                    created = self.start + timedelta(days=rng.randint(0, HISTORY_DAYS - 14))
                planned.append(self.plan_customer(region, owner, created))
        owned = list(planned)
        # about 5% key customers (the hero is one more), a fifth important, a quarter small
        for customer in rng.sample(owned, 5):
            customer.level = "key"
        rest = [c for c in owned if c.level != "key"]
        for customer in rng.sample(rest, len(rest) // 5):
            customer.level = "important"
        rest = [c for c in rest if c.level == "ordinary"]
        for customer in rng.sample(rest, len(rest) // 3):
            customer.level = "small"
        # the pool: fair visitor lists imported by the system, nobody's customers yet
        imports = (self.start + timedelta(days=100), self.days_ago(120))
        for index in range(18):
            region = ("西南", "华中", "华东", "华南", "华北", "西南")[index % 6]
            customer = self.plan_customer(region, None, imports[index % 2])
            customer.values["source"] = "展会名录导入"
            customer.values["level"] = "small" if index % 3 else "ordinary"
            customer.values.pop("credit_rating")
            planned.append(customer)
        for customer in sorted(planned, key=lambda c: (c.created, c.values["name"])):
            if customer.owner is not None:
                customer.values["level"] = customer.level
            if customer.level == "key":
                customer.values["credit_rating"] = rng.randint(4, 5)
            if customer.owner is None:
                customer.values["notes"] = "展会名录导入，尚未分配。"
            self.write_customer(customer, rng.randint(9, 17))

    def write_customer(self, customer: _Customer, hour: int, contacts: int | None = None):
        rng = self.rng
        when = self.moment(customer.created, hour, rng.randint(0, 59))
        record = self.create("Customer", customer.values, customer.owner, when)
        customer.id = record.id
        self.customers.append(customer)
        count = contacts
        if count is None:
            count = {"key": 4, "important": 3, "ordinary": 2, "small": 1}[customer.level]
            count = rng.randint(max(1, count - 1), count)
        names = rng.sample(range(len(SURNAMES) * len(GIVEN_NAMES)), count)
        for index, pick in enumerate(names):
            surname = SURNAMES[pick // len(GIVEN_NAMES)]
            given = GIVEN_NAMES[pick % len(GIVEN_NAMES)]
            self.write_contact(customer, surname, given, rng.choice(TITLES), index == 0, when)

    def write_contact(
        self,
        customer: _Customer,
        surname: tuple[str, str],
        given: tuple[str, str, str],
        title: str,
        primary: bool,
        when: datetime,
        birthday: date | None = None,
    ) -> int:
        rng = self.rng
        if birthday is None and rng.random() < 0.6:
            birthday = date(rng.randint(1965, 1995), rng.randint(1, 12), rng.randint(1, 28))
        values = {
            "customer": customer.id,
            "name": surname[0] + given[0],
            "title": title,
            "gender": given[2],
            "mobile": self.mobile(),
            "email": self.email(f"{given[1]}.{surname[1]}", customer.domain)
            if rng.random() < 0.8
            else None,
            "phone": f"{customer.values['phone']}转{rng.randint(801, 899)}",
            "birthday": birthday,
            "primary": primary,
        }
        record = self.create("Contact", values, customer.owner, when)
        customer.contacts.append(record.id)
        return record.id

    # -- the hero ---------------------------------------------------------------------------
    def hero(self) -> None:
        """金穗食品集团: a key group customer of 刘洋's since two years, with branches in all
        three regions, five contacts, purchases in all three product lines, a satisfied
        first deal, a signed second one with an overdue instalment, and an open proposal."""
        rng = self.rng
        shanghai = REGIONS["华东"][0]
        hero = _Customer(
            {
                "name": HERO_NAME,
                "short_name": "金穗食品",
                "industry": "食品加工",
                "region": "华东",
                "level": "key",
                "credit_rating": 5,
                "satisfaction": 4,
                "source": "客户介绍",
                "address": "上海市闵行区莘庄工业区春东路508号",
                "phone": "021-64881234",
                "website": "www.jinsuifood.com",
                "notes": "集团总部负责全国品牌投放，各分公司负责区域展会与地面推广。",
            },
            HERO_OWNER,
            "华东",
            shanghai,
            self.start + timedelta(days=5),
            "jinsuifood.com",
            "key",
            interests=("advertising", "expo_agency", "subscription"),
        )
        self.numbers_used.add("64881234")
        self.write_customer(hero, 10, contacts=0)
        self.hero_customer = hero
        when = self.moment(hero.created, 11)
        people = (
            ("张", "zhang", "国平", "guoping", "male", "董事长", False, None),
            ("李", "li", "雪梅", "xuemei", "female", "市场总监", True, 5),
            ("王", "wang", "晓东", "xiaodong", "male", "品牌经理", False, None),
            ("陈", "chen", "丽娟", "lijuan", "female", "采购经理", False, None),
            ("刘", "liu", "志强", "zhiqiang", "male", "财务经理", False, None),
        )
        for surname, s_py, given, g_py, gender, title, primary, birthday_in in people:
            birthday = None
            if birthday_in is not None:  # special care: her birthday is next week
                soon = self.today + timedelta(days=birthday_in)
                birthday = _same_day(soon, 1982)
            self.write_contact(
                hero, (surname, s_py), (given, g_py, gender), title, primary, when, birthday
            )
        branches = (
            ("金穗食品集团杭州分公司", "华东", "sun.li", REGIONS["华东"][1]),
            ("金穗食品集团华南分公司", "华南", "lin.hao", REGIONS["华南"][0]),
            ("金穗食品集团华北分公司", "华北", "ma.qiang", REGIONS["华北"][0]),
        )
        # 刘洋 enters the branches; the admin hands each to the manager of its region
        for name, region, owner, city in branches:
            branch = self.plan_customer(region, HERO_OWNER, hero.created + timedelta(days=40))
            branch.values.update(
                name=name,
                short_name="金穗食品" + name[6:8],
                industry="食品加工",
                level="important",
                parent=hero.id,
                website=None,
            )
            branch.city = city
            branch.values["phone"] = self.landline(city)
            branch.domain = "jinsuifood.com"
            branch.level = "important"
            self.write_customer(branch, 14, contacts=rng.randint(1, 2))
            if owner != HERO_OWNER:
                handed = self.moment(branch.created + timedelta(days=3), 9)
                self.update("Customer", branch.id, {"owner": self.user_ids[owner]}, ADMIN, handed)
                branch.owner = owner
        # first deal, two years ago: a year of web and metro advertising, delivered
        first = self.deal(
            hero,
            HERO_OWNER,
            "品牌广告投放",
            "advertising",
            [("ADV-W1", 12), ("ADV-O2", 6), ("ADV-P1", 4)],
            created=hero.created + timedelta(days=20),
        )
        self.walk(first, ["schedule_visit", "propose", "sign", "deliver"], last_days_ago=400)
        self.signed(first, (30, 40, 30), (7, 90, 180))
        # second deal: booths and a stand at this year's fairs; the second instalment is
        # three weeks overdue
        second = self.deal(
            hero,
            HERO_OWNER,
            "糖酒会展位与特装展台",
            "expo_agency",
            [("EXPO-01", 4), ("EXPO-02", 72), ("SRV-01", 1)],
            created=self.days_ago(190),
        )
        self.walk(second, ["schedule_visit", "propose", "sign"], last_days_ago=150)
        self.signed(second, (40, 40, 20), (5, 130, 215), unpaid=2)
        # subscriptions for the group's offices, renewed every year, paid on time
        for years_ago in (2, 1, 0):
            ordered = self.today - timedelta(days=365 * years_ago + 20)
            if ordered < hero.created:
                ordered = hero.created + timedelta(days=30)
            order = self.order(hero, HERO_OWNER, ordered, [("SUB-01", 40), ("SUB-04", 2)])
            self.pay_order(hero, order, ordered + timedelta(days=12))
        # and an open proposal for next year's outdoor campaign, with a plan and a quote
        third = self.deal(
            hero,
            HERO_OWNER,
            "下一年度户外广告投放",
            "advertising",
            [("ADV-O1", 4), ("ADV-O2", 6)],
            created=self.days_ago(30),
        )
        self.walk(third, ["schedule_visit", "propose"], last_days_ago=6)
        self.plan_steps(third, self.days_ago(30))
        self.quote(third, self.days_ago(6))

    # -- duplicates -------------------------------------------------------------------------
    def duplicates(self) -> None:
        """金坛酒业: entered by 孙丽 (华东) months ago, and again by 林浩 (华南), who met them
        at a fair in Guangzhou and confirmed the duplicate warning."""
        city = City("常州", "changzhou", "0519", "江苏省")
        for index, (name, owner, phone, days_ago) in enumerate(
            (
                (DUPLICATE_NAMES[0], "sun.li", "0519-82881234", 240),
                (DUPLICATE_NAMES[1], "lin.hao", "+86 519 8288 1234", 60),
            )
        ):
            customer = self.plan_customer("华东", owner, self.days_ago(days_ago))
            customer.city = city
            customer.domain = "jintanjiuye.cn" if index == 0 else "jtjy.com.cn"
            customer.values.update(
                name=name,
                short_name="金坛酒业",
                industry="白酒",
                phone=phone,
                address="江苏省常州市金坛区华城路168号",
                website="www.jintanjiuye.cn",
            )
            when = self.moment(customer.created, 15)
            record = self.create(
                "Customer", customer.values, owner, when, allow_duplicate=index == 1
            )
            customer.id = record.id
            self.customers.append(customer)
            surname, given = SURNAMES[index * 7], GIVEN_NAMES[index * 5]
            self.write_contact(customer, surname, given, "市场部经理", True, when)

    # -- the pipeline -----------------------------------------------------------------------
    GAPS = {
        "assign": (0, 1),
        "schedule_visit": (2, 10),
        "propose": (7, 21),
        "sign": (7, 30),
        "deliver": (30, 120),
        "lose": (5, 30),
        "back": (3, 10),
        "reopen": (20, 40),
    }

    def deal(
        self,
        customer: _Customer,
        owner: str,
        title: str,
        business_type: str,
        lines: list[tuple[str, int]] | None = None,
        *,
        created: date,
        by: str | None = None,
    ) -> _Deal:
        """Create an opportunity (by ``by``, default its owner) on ``created``."""
        rng = self.rng
        if lines is None:
            lines = self.basket(business_type)
        amount = sum((self.products[c].price.amount * q for c, q in lines), Decimal(0))
        if not title.startswith("下一"):  # deals begun in the last quarter are next year's
            title = f"{created.year + (1 if created.month >= 10 else 0)}年{title}"
        contact = customer.contacts[0] if customer.contacts else None
        values = {
            "title": title,
            "customer": customer.id,
            "contact": contact,
            "business_type": business_type,
            "source": customer.values.get("source"),
            "description": f"{customer.values['short_name']}：{title}",
        }
        if rng.random() < 0.5:  # an early estimate
            values["amount"] = self.money(amount)
        record = self.create("Opportunity", values, by or owner, self.moment(created, 10))
        return _Deal(record.id, owner, customer, business_type, lines, amount)

    def basket(self, business_type: str) -> list[tuple[str, int]]:
        rng = self.rng
        choices = BASKETS[business_type]
        picked = rng.sample(choices, rng.randint(1, min(3, len(choices))))
        return [(code, rng.randint(low, high)) for code, low, high in picked]

    def walk(
        self,
        deal: _Deal,
        path: list[str],
        *,
        last_days_ago: int,
        lose: dict[str, Any] | None = None,
        final_activity_days_ago: int | None = None,
    ) -> list[date]:
        """Fire ``path`` on the deal, the last trigger ``last_days_ago`` days ago and the
        others before it by typical gaps (never before the deal was created); log an
        activity for each step. Returns the day of each trigger."""
        rng = self.rng
        created = self.created_on(deal)
        days = [self.days_ago(last_days_ago)]
        for trigger in reversed(path[1:]):
            days.insert(0, days[0] - timedelta(days=rng.randint(*self.GAPS[trigger])))
        if days[0] <= created:  # squeeze the steps in after the creation day
            span = max((self.days_ago(last_days_ago) - created).days, len(path))
            days = [created + timedelta(days=span * (i + 1) // len(path)) for i in range(len(path))]
        supervisor = self.supervisor(self.team_of(deal.owner))
        for trigger, day in zip(path, days, strict=True):
            when = self.moment(day, rng.randint(9, 16), rng.randint(0, 59))
            payload: dict[str, Any] = {}
            who = deal.owner
            if trigger == "assign":
                who = supervisor
                payload = {"user_id": self.user_ids[deal.owner]}
            elif trigger == "reopen":
                who = supervisor
            elif trigger == "lose":
                payload = dict(lose or {"reason": "budget"})
            elif trigger == "propose":
                close = max(day + timedelta(days=rng.randint(14, 45)), self.today + timedelta(7))
                if "sign" in path:
                    close = days[path.index("sign")]
                self.update(
                    "Opportunity",
                    deal.id,
                    {
                        "amount": self.money(deal.amount),
                        "expected_close_date": close,
                        "contact": deal.customer.contacts[0],
                    },
                    deal.owner,
                    when,
                )
            self.fire(deal.id, trigger, who, when, **payload)
            self.log_step(deal, trigger, when)
        if final_activity_days_ago is not None:
            day = self.days_ago(final_activity_days_ago)
            self.activity(
                deal.customer,
                deal.owner,
                "call",
                "跟进商机进展",
                self.moment(day, 15),
                opportunity=deal.id,
                follow_up=self.local(self.today + timedelta(days=rng.randint(2, 10)), 10),
            )
        return days

    def created_on(self, deal: _Deal) -> date:
        created = self.records.get("Opportunity", deal.id).created_at
        return created.replace(tzinfo=UTC).astimezone(self.tz).date()

    STEP_ACTIVITIES = {
        "assign": None,
        "schedule_visit": ("call", "电话约见拜访时间"),
        "propose": ("meeting", "方案讲解会"),
        "sign": ("visit", "上门签约"),
        "deliver": ("call", "执行结束满意度回访"),
        "lose": ("note", "丢单复盘"),
        "back": ("call", "客户要求调整方案"),
        "reopen": ("note", "主管重新启动跟进"),
    }

    def log_step(self, deal: _Deal, trigger: str, when: datetime) -> None:
        kind = self.STEP_ACTIVITIES.get(trigger)
        if kind is None:
            return
        who = deal.owner
        self.activity(
            deal.customer,
            who,
            kind[0],
            kind[1],
            when + timedelta(minutes=30),
            opportunity=deal.id,
        )

    def signed(
        self, deal: _Deal, shares: tuple[int, ...], gaps: tuple[int, ...], unpaid: int = 0
    ) -> int:
        """Finish the contract the ``sign`` transition created: dates, instalments (``shares``
        in % of the amount, due ``gaps`` days after signing), an invoice, the order with the
        deal's lines, and the payments of the instalments due - except the ``unpaid`` th
        instalment when it is due already (1-based; 0 pays all)."""
        page = self.records.list(
            "Contract", filter={"opportunity": {"id": {"eq": deal.id}}}, first=1
        )
        contract = page.records[0]
        signed_on = contract.signed_on
        return self.finish_contract(
            contract.id, deal.customer, deal.owner, signed_on, deal.lines, shares, gaps, unpaid
        )

    def finish_contract(
        self,
        contract_id: int,
        customer: _Customer,
        owner: str,
        signed_on: date,
        lines: list[tuple[str, int]],
        shares: tuple[int, ...],
        gaps: tuple[int, ...],
        unpaid: int = 0,
    ) -> int:
        rng = self.rng
        amount = sum((self.products[c].price.amount * q for c, q in lines), Decimal(0))
        start = signed_on + timedelta(days=rng.randint(1, 10))
        end = start + timedelta(days=364)
        instalments = []
        left = amount
        for index, (share, gap) in enumerate(zip(shares, gaps, strict=True)):
            part = (
                left
                if index == len(shares) - 1
                else (amount * share / 100).quantize(CENT, ROUND_HALF_UP)
            )
            left -= part
            instalments.append(
                {"due_date": signed_on + timedelta(days=gap), "amount": self.money(part)}
            )
        when = self.moment(signed_on, 17)
        self.update(
            "Contract",
            contract_id,
            {"start_date": start, "end_date": end, "instalments": instalments},
            owner,
            when,
        )
        if rng.random() < 0.7:
            self.invoice_seq += 1
            self.create(
                "Invoice",
                {
                    "contract": contract_id,
                    "number": f"FP{signed_on:%Y%m%d}{self.invoice_seq:04d}",
                    "amount": self.money(amount),
                    "issued_on": signed_on + timedelta(days=2),
                },
                FINANCE,
                self.moment(signed_on + timedelta(days=2), 11),
            )
        self.order(customer, owner, start, lines, contract=contract_id)
        for number, instalment in enumerate(instalments, 1):
            due = instalment["due_date"]
            if number == unpaid and due < self.today:
                continue  # arrears
            paid_on = due + timedelta(days=rng.randint(-3, 12))
            if paid_on >= self.today:
                continue
            self.payment(customer, owner, paid_on, instalment["amount"], contract=contract_id)
        if end < self.today:
            self.update(
                "Contract", contract_id, {"status": "completed"}, owner, self.moment(end, 18)
            )
        return contract_id

    def pipeline(self) -> None:
        """Opportunities in every stage, for every customer manager, with their history."""
        lost_reasons = ("price", "budget", "timing", "no_decision")
        managers = self.managers()
        scenarios: list[tuple[str, dict[str, Any]]] = []
        scenarios += [("lead", {}), ("visit", {}), ("proposal", {}), ("satisfaction", {})] * len(
            managers
        )
        scenarios += [
            ("lead", {"assigned": True}),
            ("lead", {"assigned": True}),
            ("lead", {"reopened": True}),
            ("proposal", {"rotten": True}),
            ("proposal", {"back": True}),
            ("contract", {}),
            ("contract", {}),
            ("contract", {}),
            ("satisfaction", {}),
            ("satisfaction", {}),
            ("lost", {"competitor": True}),
        ]
        scenarios += [("lost", {"reason": reason}) for reason in lost_reasons]
        for index, (stage, options) in enumerate(scenarios):
            owner = managers[index % len(managers)]
            self.scenario(owner, stage, options)

    def scenario(self, owner: str, stage: str, options: dict[str, Any]) -> None:
        rng = self.rng
        business_type = rng.choice(("subscription", "advertising", "advertising", "expo_agency"))
        # the triggers that bring the deal to its stage, and how many days ago the last one
        if stage == "lead":
            path = ["assign"] if options.get("assigned") else []
            last = rng.randint(2, 12)
        elif stage == "visit":
            path, last = ["schedule_visit"], rng.randint(3, 10)
        elif stage == "proposal":
            path = ["schedule_visit", "propose"]
            if options.get("back"):
                path = ["schedule_visit", "propose", "back", "propose"]
            last = 45 if options.get("rotten") else rng.randint(4, 15)
        elif stage == "contract":
            path, last = ["schedule_visit", "propose", "sign"], rng.randint(25, 100)
        elif stage == "satisfaction":
            path = ["schedule_visit", "propose", "sign", "deliver"]
            last = rng.randint(30, 450)
        else:
            path = [rng.choice(([], ["schedule_visit"], ["schedule_visit", "propose"]))]
            path = [*path[0], "lose"]
            last = rng.randint(10, 80)
        if options.get("reopened"):
            path = ["schedule_visit", "lose", "reopen"]
            last = rng.randint(5, 12)
        span = sum(self.GAPS[t][1] for t in path[1:]) + 10
        begin = self.days_ago(last + span)
        candidates = [
            c for c in self.customers if c.owner == owner and c.created < begin and c.contacts
        ]
        customer = rng.choice(candidates)
        title = {
            "subscription": "期刊订阅",
            "advertising": "品牌广告投放",
            "expo_agency": "展会展位代理",
        }[business_type]
        by = self.supervisor(self.team_of(owner)) if options.get("assigned") else None
        deal = self.deal(customer, owner, title, business_type, created=begin, by=by)
        lose = None
        if "lose" in path:
            if options.get("competitor"):
                lose = {"reason": "competitor", "competitor": rng.choice(self.competitors)}
            else:
                lose = {"reason": options.get("reason") or "timing"}
        final = None
        if stage in ("lead", "visit", "proposal") and not options.get("rotten"):
            final = rng.randint(1, min(last, 8))
        if path:
            self.walk(deal, path, last_days_ago=last, lose=lose, final_activity_days_ago=final)
        else:
            self.activity(
                customer,
                owner,
                "call",
                "初次电话沟通需求",
                self.moment(self.days_ago(final or 1), 11),
                opportunity=deal.id,
                follow_up=self.local(self.today + timedelta(days=rng.randint(2, 9)), 10),
            )
        if stage == "proposal":
            self.quote(deal, self.days_ago(last))
            if rng.random() < 0.6:
                self.plan_steps(deal, self.days_ago(last + 10))
        if stage in ("contract", "satisfaction"):
            shares = rng.choice(((50, 50), (30, 40, 30), (100,)))
            gaps = (7, 90, 180)[: len(shares)]
            unpaid = 2 if stage == "contract" and len(shares) > 1 and rng.random() < 0.4 else 0
            self.signed(deal, shares, gaps, unpaid=unpaid)

    def quote(self, deal: _Deal, day: date) -> None:
        lines = [
            {
                "product": self.products[code].id,
                "quantity": quantity,
                "discount": Decimal(self.rng.choice((0, 0, 5, 10))),
            }
            for code, quantity in deal.lines
        ]
        self.create(
            "Quote",
            {
                "customer": deal.customer.id,
                "opportunity": deal.id,
                "valid_until": day + timedelta(days=30),
                "lines": lines,
            },
            deal.owner,
            self.moment(day, 16),
        )

    def plan_steps(self, deal: _Deal, begin: date) -> None:
        steps = (
            ("电话了解年度预算与投放节奏", 0),
            ("拜访市场总监，介绍刊例与案例", 7),
            ("提交投放方案与报价", 14),
            ("邀请参观合作客户展台", 35),
        )
        for action, offset in steps:
            day = begin + timedelta(days=offset)
            done = day < self.today - timedelta(days=2)
            self.create(
                "DevelopmentPlanStep",
                {
                    "opportunity": deal.id,
                    "date": day,
                    "action": action,
                    "done": done,
                    "result": "已完成，客户反馈积极" if done else None,
                },
                deal.owner,
                self.moment(begin, 9),
            )

    # -- contracts, orders, payments ----------------------------------------------------------
    def contracts(self) -> None:
        """Annual contracts of key and important customers, signed directly (renewals)."""
        rng = self.rng
        for customer in self.customers:
            if customer.owner is None or customer.level not in ("key", "important"):
                continue
            if customer.values.get("parent") or customer is self.hero_customer:
                continue
            count = 2 if customer.level == "key" else 1
            for index in range(count):
                signed_on = customer.created + timedelta(days=rng.randint(15, 60) + 365 * index)
                if signed_on >= self.today - timedelta(days=3):
                    continue
                business_type = rng.choice(customer.interests)
                lines = self.basket(business_type)
                amount = sum((self.products[c].price.amount * q for c, q in lines), Decimal(0))
                when = self.moment(signed_on, 15)
                record = self.create(
                    "Contract",
                    {
                        "customer": customer.id,
                        "signed_on": signed_on,
                        "amount": self.money(amount),
                        "status": "active",
                    },
                    customer.owner,
                    when,
                )
                shares = (50, 50) if amount > 50_000 else (100,)
                gaps = (10, 120)[: len(shares)]
                unpaid = 2 if len(shares) == 2 and rng.random() < 0.15 else 0
                self.finish_contract(
                    record.id, customer, customer.owner, signed_on, lines, shares, gaps, unpaid
                )

    def order(
        self,
        customer: _Customer,
        owner: str | None,
        day: date,
        lines: list[tuple[str, int]],
        *,
        contract: int | None = None,
    ) -> Any:
        return self.create(
            "Order",
            {
                "customer": customer.id,
                "contract": contract,
                "ordered_on": day,
                "lines": [
                    {"product": self.products[code].id, "quantity": quantity}
                    for code, quantity in lines
                ],
            },
            owner,
            self.moment(day, 14),
        )

    def payment(
        self,
        customer: _Customer,
        owner: str | None,
        paid_on: date,
        amount: Money,
        *,
        contract: int | None = None,
        order: int | None = None,
    ) -> None:
        """A payment received on ``paid_on``: finance records and confirms it from the bank
        statement; the last two weeks' are logged by the salesperson, awaiting finance."""
        rng = self.rng
        values = {
            "customer": customer.id,
            "contract": contract,
            "order": order,
            "amount": amount,
            "paid_on": paid_on,
            "method": rng.choice(("bank_transfer", "bank_transfer", "bank_transfer", "online")),
        }
        if (self.today - paid_on).days <= 14 and owner is not None:
            self.create("Payment", values, owner, self.moment(paid_on, 16))
            return
        confirmed = paid_on + timedelta(days=rng.randint(0, 3))
        values["confirmed"] = True
        self.create("Payment", values, FINANCE, self.moment(confirmed, 11))

    def pay_order(self, customer: _Customer, order: Any, paid_on: date) -> None:
        if paid_on < self.today:
            self.payment(customer, customer.owner, paid_on, order.amount, order=order.id)

    def orders(self) -> None:
        """Spot orders without contract over two years, more for better customers."""
        rng = self.rng
        per_level = {"key": (4, 7), "important": (2, 4), "ordinary": (1, 2), "small": (0, 1)}
        for customer in self.customers:
            if customer.owner is None or customer is self.hero_customer:
                continue
            low, high = per_level[customer.level]
            span = (self.today - customer.created).days
            if span < 10:
                continue
            days = sorted(rng.randint(5, span) for _ in range(rng.randint(low, high)))
            for offset in days:
                day = customer.created + timedelta(days=offset)
                if day >= self.today:
                    continue
                business_type = rng.choice(customer.interests)
                code, low_q, high_q = rng.choice(BASKETS[business_type])
                quantity = rng.randint(low_q, max(low_q, high_q // 2))
                order = self.order(customer, customer.owner, day, [(code, quantity)])
                if rng.random() < 0.9:
                    self.pay_order(customer, order, day + timedelta(days=rng.randint(3, 30)))

    # -- activities and tasks -----------------------------------------------------------------
    def activity(
        self,
        customer: _Customer,
        who: str | None,
        kind: str,
        subject: str,
        at: datetime,
        *,
        opportunity: int | None = None,
        follow_up: datetime | None = None,
    ) -> None:
        rng = self.rng
        day = at.replace(tzinfo=UTC).astimezone(self.tz).date()
        customer.last_logged = max(customer.last_logged or day, day)
        self.create(
            "Activity",
            {
                "customer": customer.id,
                "contact": rng.choice(customer.contacts) if customer.contacts else None,
                "opportunity": opportunity,
                "kind": kind,
                "subject": subject,
                "at": at,
                "duration_minutes": {"visit": 90, "meeting": 60}.get(kind, 15),
                "outcome": rng.choice(OUTCOMES),
                "next_follow_up_at": follow_up,
            },
            who,
            at,
        )

    def activities(self) -> None:
        """The salespeople's log: a few contacts a year per customer; the latest one sets
        the next follow-up - a few of them already passed (overdue follow-ups)."""
        rng = self.rng
        owned = [c for c in self.customers if c.owner is not None]
        quiet = [
            c
            for c in owned
            if c.created < self.days_ago(90)
            and (c.last_logged is None or c.last_logged < self.days_ago(40))
        ]
        late = {c.id for c in rng.sample(quiet, min(len(quiet), len(owned) // 12))}
        for customer in owned:
            count = {"key": 5, "important": 3, "ordinary": 2, "small": 1}[customer.level]
            overdue = customer.id in late
            span = (self.today - customer.created).days - (30 if overdue else 0)
            days = sorted(
                customer.created + timedelta(days=rng.randint(0, max(span - 1, 0)))
                for _ in range(count)
            )
            # most customers were in touch lately and have a follow-up planned; for a few
            # the planned date passed (overdue); the rest went quiet
            if overdue:
                days[-1] = self.days_ago(rng.randint(12, 20))
                follow_up = days[-1] + timedelta(days=rng.randint(3, 7))
            elif rng.random() < 0.7:
                days[-1] = max(days[-1], self.days_ago(rng.randint(1, 30)))
                follow_up = self.today + timedelta(days=rng.randint(1, 21))
            else:
                follow_up = None
            for number, day in enumerate(days, 1):
                kind = rng.choice(("call", "call", "visit", "email", "meeting", "note"))
                planned = follow_up if number == count else None
                self.activity(
                    customer,
                    customer.owner,
                    kind,
                    rng.choice(SUBJECTS[kind]),
                    self.moment(day, rng.randint(9, 17), rng.randint(0, 59)),
                    follow_up=self.local(planned, 10) if planned else None,
                )

    def tasks(self) -> None:
        """Each salesperson's to-do list: done, due soon and overdue."""
        rng = self.rng
        hero = self.hero_customer
        self.create(
            "Task",
            {
                "title": "催收金穗食品第二期展位款",
                "due": self.local(self.days_ago(10), 18),
                "customer": hero.id,
                "notes": "财务经理刘志强承诺月底前付款，需再次确认。",
            },
            HERO_OWNER,
            self.moment(self.days_ago(20), 9),
        )
        people = [
            p.username for p in PERSONAS if p.role in ("customer_manager", "sales_supervisor")
        ]
        for person in people:
            mine = [c for c in self.customers if c.owner == person]
            for number in range(4 if person in self.managers() else 2):
                due_in = (-rng.randint(3, 15), rng.randint(-30, -10), rng.randint(1, 14))
                due_in += (rng.randint(5, 30),)
                due = self.today + timedelta(days=due_in[number % 4])
                done = number == 1  # the older one got done
                customer = rng.choice(mine) if mine else None
                self.create(
                    "Task",
                    {
                        "title": rng.choice(TASKS),
                        "due": self.local(due, 18),
                        "done": done,
                        "customer": customer.id if customer else None,
                    },
                    person,
                    self.moment(min(due, self.today) - timedelta(days=rng.randint(5, 10)), 9),
                )

    def arrears(self) -> None:
        """Instalments that fell due unpaid are ``overdue`` as of today, as the worker's
        reminder job would have marked them (a status follows from payments and due date,
        and is recomputed when written; the system writes it, as the job does)."""
        late = self.records.scoped_query("PaymentPlan").filter(
            "lambda p: p.status == 'pending' and p.due_date < today", {}, {"today": self.today}
        )
        for plan_id in sorted(plan.id for plan in late):
            self.update("PaymentPlan", plan_id, {"status": "overdue"}, None, self.now)

    # -- large ------------------------------------------------------------------------------
    def bulk(self, total: int) -> None:
        """:data:`LARGE_CUSTOMERS` customers (imported by the admin, owned across the teams,
        a tenth in the pool) and :data:`LARGE_ORDERS` orders over two years, more for better
        customers, written with ``create_many`` a week (or a month of customers) at a time
        with the clock at the end of that period."""
        done = self.steps_done
        created = self.bulk_customers(lambda n: self.progress(done + n, total))
        done += LARGE_CUSTOMERS
        self.bulk_orders(created, lambda n: self.progress(done + n, total))

    def bulk_customers(self, progress: Callable[[int], None]) -> list[tuple[date, int, str]]:
        """Write the customers; return (created day, id, level) of each, oldest first."""
        rng = self.rng
        cities = [(region, city) for region, found in REGIONS.items() for city in found]
        pairs = len(BRAND_CHARS) * (len(BRAND_CHARS) - 1)  # two different characters
        combos = len(cities) * pairs * len(TRADES)
        taken = self.names_used
        phones = iter(rng.sample(range(20_000_000, 90_000_000), LARGE_CUSTOMERS * 2))
        owners: dict[str, list[int | None]] = {}
        for team, region in TEAM_REGIONS.items():
            staff = [self.supervisor(team)] + self.managers(team) * 3
            owners[region] = [self.user_ids[name] for name in staff] + [None]
        levels = ("key",) * 5 + ("important",) * 20 + ("ordinary",) * 50 + ("small",) * 25
        rows: list[tuple[int, dict[str, Any]]] = []
        for pick in rng.sample(range(combos), LARGE_CUSTOMERS + len(taken)):
            if len(rows) == LARGE_CUSTOMERS:
                break
            place, rest = divmod(pick, pairs * len(TRADES))
            pair, trade = divmod(rest, len(TRADES))
            first, second = divmod(pair, len(BRAND_CHARS) - 1)
            second += second >= first
            region, city = cities[place]
            brand = BRAND_CHARS[first][0] + BRAND_CHARS[second][0]
            trade_name, _py, industry = TRADES[trade]
            key = f"{city.name}{brand}{trade_name}"
            if key in taken:
                continue
            taken.add(key)
            phone = next(phones)
            while str(phone) in self.numbers_used:
                phone = next(phones)
            self.numbers_used.add(str(phone))
            level = rng.choice(levels)
            owner = rng.choice(owners[region]) if region in owners else None
            values = {
                "name": key + rng.choice(LEGAL_FORMS),
                "code": f"B{len(rows) + 1:06d}",
                "short_name": brand + trade_name,
                "industry": industry,
                "region": region,
                "level": level,
                "credit_rating": rng.randint(1, 5),
                "source": rng.choice(SOURCES),
                "address": self.address(city),
                "phone": f"{city.area_code}-{phone}",
                "owner": owner,
            }
            rows.append((rng.randint(0, HISTORY_DAYS - 1), values))
        rows.sort(key=lambda row: row[0])
        written: list[tuple[date, int, str]] = []
        month: list[dict[str, Any]] = []
        for index, (offset, values) in enumerate(rows):
            month.append(values)
            last = index == len(rows) - 1
            if last or rows[index + 1][0] // 30 != offset // 30:
                day = self.start + timedelta(days=offset)
                base = len(written)
                with self.at(self.moment(day, 18)):
                    ids = self.records.create_many(
                        "Customer",
                        month,
                        actor=self.actor(ADMIN),
                        progress=lambda n, base=base: progress(base + n),
                    )
                for values, rid in zip(month, ids, strict=True):
                    written.append((day, rid, values["level"]))
                month = []
        return written

    def bulk_orders(
        self, customers: list[tuple[date, int, str]], progress: Callable[[int], None]
    ) -> None:
        """Orders day by day over two years (fewer at weekends); each goes to a customer
        that existed by then, key customers ordering most."""
        rng = self.rng
        weight = {"key": 12.0, "important": 4.0, "ordinary": 1.0, "small": 0.4}
        cumulative: list[float] = []
        running = 0.0
        for _day, _rid, level in customers:
            running += weight[level]
            cumulative.append(running)
        amounts = []
        for code, _name, category, _unit, price, active in PRODUCTS:
            if not active:
                continue
            low, high = next(
                ((lo, hi) for c, lo, hi in BASKETS.get(category, ()) if c == code), (1, 1)
            )
            for _ in range(10):
                amounts.append(self.money(Decimal(price) * rng.randint(low, max(low, high // 2))))
        days = [self.start + timedelta(days=n) for n in range(HISTORY_DAYS)]
        shares = [0.3 if day.weekday() >= 5 else 1.0 for day in days]
        scale = LARGE_ORDERS / sum(shares)
        counts = [int(share * scale) for share in shares]
        for index in range(LARGE_ORDERS - sum(counts)):
            counts[index % len(counts)] += 1
        written = 0
        week: list[dict[str, Any]] = []
        for number, (day, count) in enumerate(zip(days, counts, strict=True)):
            known = bisect.bisect_right(customers, (day, float("inf")))
            known = max(known, 1)
            top = cumulative[known - 1]
            for _ in range(count):
                pick = bisect.bisect_right(cumulative, rng.random() * top, 0, known - 1)
                week.append(
                    {
                        "customer": customers[pick][1],
                        "ordered_on": day,
                        "amount": rng.choice(amounts),
                    }
                )
            if day.weekday() == 6 or number == len(days) - 1:
                base = written
                with self.at(self.moment(day, 20)):
                    self.records.create_many(
                        "Order",
                        week,
                        actor=self.actor(ADMIN),
                        batch_size=2000,
                        progress=lambda n, base=base: progress(base + n),
                    )
                written += len(week)
                week = []


def _same_day(day: date, year: int) -> date:
    """``day`` in ``year`` (29 February becomes the 28th)."""
    try:
        return day.replace(year=year)
    except ValueError:
        return day.replace(year=year, day=28)
