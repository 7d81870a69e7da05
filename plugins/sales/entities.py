"""The sales entities, as descriptions in the format of ``docs/entities.md``.

Every entity and field carries an English and a Chinese label. Computed fields
(``readonly``) are filled by the plugin's ``before_commit`` and ``record_written`` hooks
(see ``computed.py``); ``Opportunity.stage`` is added by the engine from the states of the
workflow bound to it, so an admin's replacement workflow brings its own states.
"""

from __future__ import annotations

from typing import Any


def _field(type_: str, en: str, zh: str, **options: Any) -> dict[str, Any]:
    return {"type": type_, "label": en, "labels": {"zh": zh}, **options}


def _ref(to: str, en: str, zh: str, reverse: str, **options: Any) -> dict[str, Any]:
    return _field("ref", en, zh, to=to, reverse=reverse, **options)


def _choices(*items: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"value": value, "label": en, "labels": {"zh": zh}} for value, en, zh in items]


def _entity(name: str, en: str, zh: str, fields: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {"name": name, "label": en, "labels": {"zh": zh}, "fields": fields, **keys}


#: What a product is sold as; also an opportunity's business type.
BUSINESS_TYPES = _choices(
    ("subscription", "Subscription", "期刊订阅"),
    ("advertising", "Advertising", "广告"),
    ("expo_agency", "Expo agency", "展会代理"),
    ("service", "Service", "服务"),
    ("other", "Other", "其他"),
)
LOST_REASONS = _choices(
    ("price", "Price", "价格"),
    ("competitor", "Competitor", "竞争对手"),
    ("budget", "Budget", "预算"),
    ("timing", "Timing", "时机"),
    ("no_decision", "No decision", "未决策"),
    ("other", "Other", "其他"),
)
LOST_REASON_VALUES = [c["value"] for c in LOST_REASONS]

_NOTES = _field("text", "Notes", "备注")
_MONEY_RO = {"readonly": True}

CUSTOMER = _entity(
    "Customer",
    "Customer",
    "客户",
    {
        "name": _field("string", "Name", "名称", required=True, max_length=200, indexed=True),
        "code": _field("string", "Code", "编号", unique=True, max_length=40),
        "short_name": _field("string", "Short name", "简称", max_length=60),
        "industry": _field("string", "Industry", "行业", max_length=60, indexed=True),
        "region": _field("string", "Region", "地区", max_length=60, indexed=True),
        "level": _field(
            "enum",
            "Level",
            "客户级别",
            default="ordinary",
            indexed=True,
            choices=_choices(
                ("key", "Key customer", "重点客户"),
                ("important", "Important", "重要客户"),
                ("ordinary", "Ordinary", "普通客户"),
                ("small", "Small", "小客户"),
            ),
        ),
        "credit_rating": _field("int", "Credit rating", "信用等级", min=1, max=5),
        "satisfaction": _field("int", "Satisfaction", "满意度", min=1, max=5),
        "source": _field("string", "Source", "客户来源", max_length=60),
        "address": _field("string", "Address", "地址", max_length=255),
        "phone": _field("phone", "Phone", "电话"),
        "website": _field("string", "Website", "网址", max_length=255),
        "parent": _ref("Customer", "Parent company", "上级公司", "branches"),
        "notes": _NOTES,
        "last_activity_at": _field("datetime", "Last activity", "最近跟进", readonly=True),
        "next_follow_up_at": _field("datetime", "Next follow-up", "下次跟进", readonly=True),
        "owned_since": _field(
            "datetime",
            "Owned since",
            "归属时间",
            readonly=True,
            description="When the customer came to its owner (created, claimed or handed "
            "over); empty in the shared pool.",
        ),
    },
    owned=True,
    members=True,
    natural_key="code",
    duplicate_keys=["name", "phone"],
)

CONTACT = _entity(
    "Contact",
    "Contact",
    "联系人",
    {
        "customer": _ref("Customer", "Customer", "客户", "contacts", required=True),
        "name": _field("string", "Name", "姓名", required=True, max_length=100),
        "title": _field("string", "Title", "职务", max_length=100),
        "gender": _field(
            "enum",
            "Gender",
            "性别",
            choices=_choices(("male", "Male", "男"), ("female", "Female", "女")),
        ),
        "phone": _field("phone", "Phone", "电话"),
        "mobile": _field("phone", "Mobile", "手机"),
        "email": _field("email", "Email", "邮箱"),
        "birthday": _field("date", "Birthday", "生日"),
        "primary": _field("bool", "Primary contact", "主要联系人", default=False),
        "notes": _NOTES,
    },
    owner_via="customer",
    duplicate_keys=["mobile", "email"],
)

PRODUCT = _entity(
    "Product",
    "Product",
    "产品",
    {
        "code": _field("string", "Code", "编号", required=True, unique=True, max_length=40),
        "name": _field("string", "Name", "名称", required=True, max_length=200),
        "category": _field(
            "enum", "Category", "类别", required=True, indexed=True, choices=BUSINESS_TYPES
        ),
        "unit": _field("string", "Unit", "单位", max_length=20),
        "price": _field("money", "Price", "单价"),
        "stock": _field("int", "Stock", "库存"),
        "active": _field("bool", "Active", "在售", default=True),
    },
    natural_key="code",
)

COMPETITOR = _entity(
    "Competitor",
    "Competitor",
    "竞争对手",
    {
        "name": _field("string", "Name", "名称", required=True, unique=True, max_length=200),
        "notes": _NOTES,
    },
    natural_key="name",
)

OPPORTUNITY = _entity(
    "Opportunity",
    "Opportunity",
    "商机",
    {
        "title": _field("string", "Title", "名称", required=True, max_length=200),
        "customer": _ref("Customer", "Customer", "客户", "opportunities", required=True),
        "contact": _ref("Contact", "Contact", "联系人", "opportunities"),
        "business_type": _field(
            "enum", "Business type", "业务类型", indexed=True, choices=BUSINESS_TYPES
        ),
        "source": _field("string", "Source", "商机来源", max_length=60),
        "amount": _field("money", "Amount", "预计金额", min=0),
        "expected_close_date": _field("date", "Expected close date", "预计成交日期"),
        "probability": _field(
            "decimal", "Probability", "赢单率", precision=3, scale=2, min=0, max=1
        ),
        "lost_reason": _field(
            "enum", "Lost reason", "丢单原因", choices=LOST_REASONS, indexed=True
        ),
        "competitor": _ref("Competitor", "Competitor", "竞争对手", "opportunities"),
        "description": _field("text", "Description", "描述"),
        "last_activity_at": _field("datetime", "Last activity", "最近跟进", readonly=True),
    },
    owned=True,
)

DEVELOPMENT_PLAN_STEP = _entity(
    "DevelopmentPlanStep",
    "Development plan step",
    "客户开发计划",
    {
        "opportunity": _ref(
            "Opportunity", "Opportunity", "商机", "development_plan", required=True
        ),
        "date": _field("date", "Date", "日期"),
        "action": _field("string", "Action", "计划内容", required=True, max_length=255),
        "result": _field("text", "Result", "执行结果"),
        "done": _field("bool", "Done", "已完成", default=False),
    },
    owner_via="opportunity",
)

QUOTE = _entity(
    "Quote",
    "Quote",
    "报价",
    {
        "number": _field("string", "Number", "报价单号", unique=True, max_length=40),
        "customer": _ref("Customer", "Customer", "客户", "quotes", required=True),
        "opportunity": _ref("Opportunity", "Opportunity", "商机", "quotes"),
        "valid_until": _field("date", "Valid until", "有效期至"),
        "total": _field("money", "Total", "总金额", **_MONEY_RO),
    },
    owner_via="customer",
    natural_key="number",
)

QUOTE_LINE = _entity(
    "QuoteLine",
    "Quote line",
    "报价明细",
    {
        "quote": _ref("Quote", "Quote", "报价", "lines", required=True),
        "product": _ref("Product", "Product", "产品", "quote_lines", required=True),
        "quantity": _field(
            "decimal", "Quantity", "数量", required=True, precision=12, scale=2, min=0
        ),
        "unit_price": _field("money", "Unit price", "单价", min=0),
        "discount": _field(
            "decimal", "Discount %", "折扣(%)", precision=5, scale=2, min=0, max=100, default=0
        ),
        "amount": _field("money", "Amount", "金额", **_MONEY_RO),
    },
    parent="quote",
)

CONTRACT = _entity(
    "Contract",
    "Contract",
    "合同",
    {
        "number": _field("string", "Number", "合同编号", unique=True, max_length=40),
        "customer": _ref("Customer", "Customer", "客户", "contracts", required=True),
        "opportunity": _ref("Opportunity", "Opportunity", "商机", "contracts"),
        "signed_on": _field("date", "Signed on", "签约日期"),
        "start_date": _field("date", "Start date", "开始日期"),
        "end_date": _field("date", "End date", "结束日期"),
        "amount": _field("money", "Amount", "合同金额", min=0),
        "status": _field(
            "enum",
            "Status",
            "状态",
            default="draft",
            indexed=True,
            choices=_choices(
                ("draft", "Draft", "草稿"),
                ("active", "Active", "执行中"),
                ("completed", "Completed", "已完成"),
                ("terminated", "Terminated", "已终止"),
            ),
        ),
        "received": _field(
            "money",
            "Received",
            "已回款",
            description="The sum of the contract's confirmed payments.",
            **_MONEY_RO,
        ),
        "receivable": _field(
            "money",
            "Receivable",
            "应收款",
            description="The amount less the confirmed payments.",
            **_MONEY_RO,
        ),
    },
    owned=True,
    natural_key="number",
)

PAYMENT_PLAN = _entity(
    "PaymentPlan",
    "Instalment",
    "回款计划",
    {
        "contract": _ref("Contract", "Contract", "合同", "instalments", required=True),
        "due_date": _field("date", "Due date", "计划回款日期", required=True, indexed=True),
        "amount": _field("money", "Amount", "计划回款金额", required=True, min=0),
        "paid_amount": _field(
            "money",
            "Paid",
            "已回款金额",
            description="Confirmed payments of the contract allocated to this instalment, "
            "earliest due first.",
            **_MONEY_RO,
        ),
        "status": _field(
            "enum",
            "Status",
            "状态",
            default="pending",
            indexed=True,
            choices=_choices(
                ("pending", "Pending", "待回款"),
                ("paid", "Paid", "已回款"),
                ("overdue", "Overdue", "已逾期"),
            ),
        ),
    },
    parent="contract",
)

INVOICE = _entity(
    "Invoice",
    "Invoice",
    "发票",
    {
        "contract": _ref("Contract", "Contract", "合同", "invoices", required=True),
        "number": _field("string", "Number", "发票号码", required=True, unique=True, max_length=40),
        "amount": _field("money", "Amount", "金额", required=True, min=0),
        "issued_on": _field("date", "Issued on", "开票日期"),
    },
    owner_via="contract",
    natural_key="number",
)

ORDER = _entity(
    "Order",
    "Order",
    "订单",
    {
        "customer": _ref("Customer", "Customer", "客户", "orders", required=True),
        "contract": _ref("Contract", "Contract", "合同", "orders"),
        "ordered_on": _field("date", "Ordered on", "下单日期", required=True, indexed=True),
        "amount": _field(
            "money",
            "Amount",
            "金额",
            min=0,
            description="The sum of the lines when the order has lines; else as entered.",
        ),
    },
    owner_via="customer",
)

ORDER_LINE = _entity(
    "OrderLine",
    "Order line",
    "订单明细",
    {
        "order": _ref("Order", "Order", "订单", "lines", required=True),
        "product": _ref("Product", "Product", "产品", "order_lines", required=True),
        "quantity": _field(
            "decimal", "Quantity", "数量", required=True, precision=12, scale=2, min=0
        ),
        "unit_price": _field("money", "Unit price", "单价", min=0),
        "amount": _field("money", "Amount", "金额", **_MONEY_RO),
    },
    parent="order",
)

PAYMENT = _entity(
    "Payment",
    "Payment",
    "回款",
    {
        "customer": _ref("Customer", "Customer", "客户", "payments", required=True),
        "contract": _ref("Contract", "Contract", "合同", "payments"),
        "order": _ref("Order", "Order", "订单", "payments"),
        "amount": _field("money", "Amount", "回款金额", required=True, min=0),
        "paid_on": _field("date", "Paid on", "回款日期", required=True, indexed=True),
        "method": _field(
            "enum",
            "Method",
            "付款方式",
            choices=_choices(
                ("bank_transfer", "Bank transfer", "银行转账"),
                ("cash", "Cash", "现金"),
                ("cheque", "Cheque", "支票"),
                ("card", "Card", "刷卡"),
                ("online", "Online payment", "在线支付"),
                ("other", "Other", "其他"),
            ),
        ),
        "confirmed": _field("bool", "Confirmed", "已确认", default=False),
        "confirmed_by": _ref("User", "Confirmed by", "确认人", "confirmed_payments", readonly=True),
        "confirmed_at": _field("datetime", "Confirmed at", "确认时间", readonly=True),
    },
    owner_via="customer",
)

ACTIVITY = _entity(
    "Activity",
    "Activity",
    "跟进记录",
    {
        "customer": _ref("Customer", "Customer", "客户", "activities", required=True),
        "contact": _ref("Contact", "Contact", "联系人", "activities"),
        "opportunity": _ref("Opportunity", "Opportunity", "商机", "activities"),
        "kind": _field(
            "enum",
            "Kind",
            "方式",
            required=True,
            choices=_choices(
                ("call", "Call", "电话"),
                ("visit", "Visit", "拜访"),
                ("meeting", "Meeting", "会议"),
                ("email", "Email", "邮件"),
                ("note", "Note", "备忘"),
            ),
        ),
        "subject": _field("string", "Subject", "主题", required=True, max_length=200),
        "at": _field(
            "datetime",
            "At",
            "时间",
            indexed=True,
            description="When it happened; now when not given.",
        ),
        "duration_minutes": _field("int", "Duration (minutes)", "时长(分钟)", min=0),
        "outcome": _field("text", "Outcome", "结果"),
        "next_follow_up_at": _field("datetime", "Next follow-up", "下次跟进"),
    },
    owned=True,
    plural="activities",
)

TASK = _entity(
    "Task",
    "Task",
    "任务",
    {
        "title": _field("string", "Title", "标题", required=True, max_length=200),
        "due": _field("datetime", "Due", "截止时间", indexed=True),
        "done": _field("bool", "Done", "已完成", default=False),
        "customer": _ref("Customer", "Customer", "客户", "tasks"),
        "opportunity": _ref("Opportunity", "Opportunity", "商机", "tasks"),
        "notes": _NOTES,
    },
    owned=True,
)

ENTITIES: tuple[dict[str, Any], ...] = (
    CUSTOMER,
    CONTACT,
    PRODUCT,
    COMPETITOR,
    OPPORTUNITY,
    DEVELOPMENT_PLAN_STEP,
    QUOTE,
    QUOTE_LINE,
    CONTRACT,
    PAYMENT_PLAN,
    INVOICE,
    ORDER,
    ORDER_LINE,
    PAYMENT,
    ACTIVITY,
    TASK,
)
